"""Compact JWS (JWT) signing and verification for the two algorithms Google uses here.

- ES256: IAP's signed header `x-goog-iap-jwt-assertion` (keys published as a JWK set).
- RS256: Google ID tokens and service-account-signed JWTs that IAP accepts from clients.

Kept small and strict on purpose: the algorithm comes from the caller's allow-list, never from
the token alone (so `none` and algorithm confusion are refused), keys are looked up by `kid`,
and every claim check names what failed.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

SUPPORTED_ALGORITHMS = ("ES256", "RS256")


class TokenError(ValueError):
    """The token is malformed, unsigned, badly signed, or its claims do not hold."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise TokenError("token is not base64url") from e


def _int_from_b64(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def _int_to_b64(value: int, length: int | None = None) -> str:
    length = length or (value.bit_length() + 7) // 8
    return b64url_encode(value.to_bytes(length, "big"))


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    kty = jwk.get("kty")
    if kty == "EC":
        if jwk.get("crv") != "P-256":
            raise TokenError(f"unsupported EC curve {jwk.get('crv')!r}")
        numbers = ec.EllipticCurvePublicNumbers(
            _int_from_b64(jwk["x"]), _int_from_b64(jwk["y"]), ec.SECP256R1()
        )
        return numbers.public_key()
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_int_from_b64(jwk["e"]), _int_from_b64(jwk["n"])).public_key()
    raise TokenError(f"unsupported key type {kty!r}")


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


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, PublicKey]:
    """kid -> public key, for every key in a JWK set; keys we cannot use are skipped."""
    keys: dict[str, PublicKey] = {}
    for jwk in document.get("keys", []):
        kid = jwk.get("kid")
        if not kid:
            continue
        try:
            keys[kid] = public_key_from_jwk(jwk)
        except (TokenError, KeyError, ValueError):
            continue
    return keys


def _signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    h = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    c = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{h}.{c}".encode("ascii")


def sign(claims: Mapping[str, Any], key: PrivateKey, kid: str) -> str:
    """Sign claims with ES256 (EC P-256 key) or RS256 (RSA key)."""
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    signing_input = _signing_input({"alg": alg, "typ": "JWT", "kid": kid}, claims)
    return f"{signing_input.decode()}.{b64url_encode(sign_bytes(signing_input, key))}"


def sign_bytes(data: bytes, key: PrivateKey) -> bytes:
    """The raw JWS signature of data: r||s for ES256, PKCS#1 v1.5 for RS256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@dataclass(frozen=True)
class UnverifiedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse(token: str) -> UnverifiedToken:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenError("token is not a compact JWS (header.payload.signature)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenError("token header or payload is not JSON") from e
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("token header or payload is not a JSON object")
    return UnverifiedToken(
        header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])
    )


def _check_signature(token: UnverifiedToken, key: PublicKey, alg: str) -> None:
    try:
        if alg == "ES256":
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(token.signature) != 64:
                raise TokenError("signature does not match the key")
            der = encode_dss_signature(
                int.from_bytes(token.signature[:32], "big"),
                int.from_bytes(token.signature[32:], "big"),
            )
            key.verify(der, token.signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "RS256":
            if not isinstance(key, rsa.RSAPublicKey):
                raise TokenError("signature does not match the key")
            key.verify(token.signature, token.signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:  # pragma: no cover - guarded by the allow-list
            raise TokenError(f"algorithm {alg!r} is not allowed")
    except InvalidSignature:
        raise TokenError("signature is invalid") from None


def verify(
    token: str,
    key_for: Callable[[str], PublicKey | None],
    *,
    algorithms: Iterable[str],
    audience: str | Iterable[str],
    issuers: Iterable[str],
    leeway: int = 30,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify signature and claims; return the claims or raise TokenError saying why."""
    parsed = parse(token)
    allowed = set(algorithms)
    alg = parsed.header.get("alg")
    if alg not in allowed or alg not in SUPPORTED_ALGORITHMS:
        raise TokenError(
            f"algorithm {alg!r} is not allowed (expected {', '.join(sorted(allowed))})"
        )
    kid = parsed.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token has no key id (kid)")
    key = key_for(kid)
    if key is None:
        raise TokenError(f"unknown key id {kid!r}")
    _check_signature(parsed, key, alg)

    claims = parsed.claims
    now = time.time() if now is None else now
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        raise TokenError("token has no expiry (exp)")
    if now > exp + leeway:
        raise TokenError("token has expired")
    if isinstance(iat, int | float) and iat > now + leeway:
        raise TokenError("token is not valid yet (iat in the future)")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + leeway:
        raise TokenError("token is not valid yet (nbf in the future)")
    if claims.get("iss") not in set(issuers):
        raise TokenError(f"issuer {claims.get('iss')!r} is not accepted")
    wanted = {audience} if isinstance(audience, str) else set(audience)
    aud = claims.get("aud")
    auds = set(aud) if isinstance(aud, list) else {aud}
    if not wanted & auds:
        raise TokenError(f"audience {aud!r} does not match")
    return claims
