"""IAP's side of the signed header: an ES256 key set served over HTTP, and assertions signed
with it, exactly as IAP sends them (`x-goog-iap-jwt-assertion`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider
from mlflow.tracking.request_header.registry import _request_header_provider_registry

from deployer.server.settings import IAP_ISSUER
from tests.support import jws
from tests.support.http import LocalHttpServer, Request, Response

JWKS_PATH = "/iap/verify/public_key-jwk"


@dataclass
class IapKeys:
    audience: str
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for _ in range(2):
            self.rotate()
        self.server = LocalHttpServer(self._serve)

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return kid

    def _serve(self, req: Request) -> Response:
        if req.path != JWKS_PATH:
            return Response(404, "not found")
        return Response(
            200,
            {
                "keys": [
                    jws.jwk_from_public_key(k.public_key(), kid) for kid, k in self.keys.items()
                ]
            },
        )

    @property
    def jwks_url(self) -> str:
        return self.server.url + JWKS_PATH

    @property
    def fetches(self) -> int:
        return sum(1 for r in self.server.requests if r.path == JWKS_PATH)

    def assertion(
        self,
        email: str = "alice@example.com",
        *,
        audience: str | None = None,
        issuer: str = IAP_ISSUER,
        lifetime: int = 600,
        iat_offset: int = 0,
        kid: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        now = int(time.time()) + iat_offset
        kid = kid or next(iter(self.keys))
        claims = {
            "iss": issuer,
            "aud": audience or self.audience,
            "iat": now,
            "exp": now + lifetime,
            "sub": f"accounts.google.com:{abs(hash(email))}",
            "email": email,
            "hd": email.split("@")[1],
        }
        return jws.sign(claims, key or self.keys[kid], kid)

    def close(self) -> None:
        self.server.close()


class IapHeaderProvider(RequestHeaderProvider):
    """What IAP adds in front of the service: a fresh signed assertion on every request."""

    def __init__(self, keys: IapKeys, email: str = "alice@example.com") -> None:
        self.keys = keys
        self.email = email

    def in_context(self) -> bool:
        return True

    def request_headers(self) -> dict[str, str]:
        return {"x-goog-iap-jwt-assertion": self.keys.assertion(self.email)}


@contextmanager
def iap_headers(keys: IapKeys, email: str = "alice@example.com") -> Iterator[IapHeaderProvider]:
    """Make every mlflow client request in this process carry an IAP assertion."""
    provider = IapHeaderProvider(keys, email)
    _request_header_provider_registry._registry.append(provider)
    try:
        yield provider
    finally:
        _request_header_provider_registry._registry.remove(provider)
