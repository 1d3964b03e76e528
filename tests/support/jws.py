"""Signing side of JWS for the fakes of Google's endpoints (IAP, the OAuth token endpoint, IAM
Credentials signJwt): what Google signs, we sign here, and the code under test verifies with
PyJWT (`deployer.server.jose`). Keeping the two apart means a bug in one cannot hide in the
other."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_to_b64(value: int, length: int | None = None) -> str:
    length = length or (value.bit_length() + 7) // 8
    return b64url_encode(value.to_bytes(length, "big"))


def jwk_from_public_key(key: PublicKey, kid: str) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        n = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": kid,
            "x": _int_to_b64(n.x, 32),
            "y": _int_to_b64(n.y, 32),
        }
    n = key.public_numbers()
    return {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": kid,
        "n": _int_to_b64(n.n),
        "e": _int_to_b64(n.e),
    }


def encode_segments(header: Mapping[str, Any] | bytes, claims: Mapping[str, Any] | bytes) -> str:
    """`header.payload` from objects, or from raw bytes for deliberately odd tokens."""

    def seg(part: Mapping[str, Any] | bytes) -> str:
        raw = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
        return b64url_encode(raw)

    return f"{seg(header)}.{seg(claims)}"


def sign(claims: Mapping[str, Any] | bytes, key: PrivateKey, kid: str, **header: Any) -> str:
    """Sign claims with ES256 (EC P-256 key) or RS256 (RSA key); extra header fields allowed."""
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    signing_input = encode_segments({"alg": alg, "typ": "JWT", "kid": kid, **header}, claims)
    return f"{signing_input}.{b64url_encode(sign_bytes(signing_input.encode(), key))}"


def sign_raw(header: bytes, claims: bytes, key: PrivateKey) -> str:
    """A validly signed token whose header and payload are exactly these bytes."""
    signing_input = encode_segments(header, claims)
    return f"{signing_input}.{b64url_encode(sign_bytes(signing_input.encode(), key))}"


def sign_bytes(data: bytes, key: PrivateKey) -> bytes:
    """The raw JWS signature of data: r||s for ES256, PKCS#1 v1.5 for RS256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@dataclass(frozen=True)
class Parsed:
    header: dict[str, Any]
    claims: dict[str, Any]


def parse(token: str) -> Parsed:
    """Header and claims of a token, unverified (for fakes that route on them)."""
    h, p, _ = token.split(".")
    return Parsed(json.loads(b64url_decode(h)), json.loads(b64url_decode(p)))
