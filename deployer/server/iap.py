"""Verification of IAP's signed header, `x-goog-iap-jwt-assertion` (defense in depth).

IAP already refuses unauthenticated traffic; this makes the server refuse any request that did
not come through IAP (a misconfigured ingress, a leaked run.app URL, a forged header).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from deployer import jose
from deployer.server.settings import IAP_ISSUER

IAP_HEADER = "x-goog-iap-jwt-assertion"
# Refetch the key set at most this often when a token names a kid we do not know, so a flood
# of forged kids cannot turn into a flood of fetches.
MIN_REFRESH_SECONDS = 5.0
KEYS_MAX_AGE_SECONDS = 3600.0


@dataclass(frozen=True)
class IapIdentity:
    email: str
    subject: str


class KeySet:
    """A JWK set fetched from a URL, cached, refreshed when a token names an unknown kid."""

    def __init__(
        self,
        url: str,
        fetch: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch or _fetch_json
        self._clock = clock
        self._keys: dict[str, jose.PublicKey] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh_locked(self) -> None:
        self._keys = jose.keys_from_jwks(self._fetch(self.url))
        self._fetched_at = self._clock()
        self.fetches += 1

    def key_for(self, kid: str) -> jose.PublicKey | None:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > KEYS_MAX_AGE_SECONDS
            unknown = kid not in self._keys
            may_refetch = self._fetched_at is None or now - self._fetched_at >= MIN_REFRESH_SECONDS
            if stale or (unknown and may_refetch):
                try:
                    self._refresh_locked()
                except Exception:
                    if not self._keys:
                        raise
            return self._keys.get(kid)


def _fetch_json(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


class IapVerifier:
    def __init__(self, audience: str, keys: KeySet, leeway: int = 30) -> None:
        self.audience = audience
        self.keys = keys
        self.leeway = leeway

    def verify(self, assertion: str | None) -> IapIdentity:
        if not assertion:
            raise jose.TokenError(f"missing {IAP_HEADER} header: requests must come through IAP")
        try:
            claims = jose.verify(
                assertion,
                self.keys.key_for,
                algorithms=["ES256"],
                audience=self.audience,
                issuers=[IAP_ISSUER],
                leeway=self.leeway,
            )
        except requests.RequestException as e:
            raise jose.TokenError(f"cannot fetch IAP keys: {e}") from e
        email = claims.get("email")
        subject = claims.get("sub")
        if not isinstance(email, str) or "@" not in email or not isinstance(subject, str):
            raise jose.TokenError("assertion has no email or subject")
        # IAP prefixes identities with the identity source, e.g. "accounts.google.com:".
        return IapIdentity(email=email.split(":", 1)[-1], subject=subject)
