"""Verification of IAP's signed header, `x-goog-iap-jwt-assertion` (defense in depth).

IAP already refuses unauthenticated traffic; this makes the server refuse any request that did
not come through IAP (a misconfigured ingress, a leaked run.app URL, a forged header).
Google's recipe: https://cloud.google.com/iap/docs/signed-headers-howto (ES256, keys from
`public_key-jwk`, `iss` https://cloud.google.com/iap, `aud` the resource).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from deployer.server import jose
from deployer.server.settings import IAP_ISSUER

IAP_HEADER = "x-goog-iap-jwt-assertion"
# Refetch the key set at most this often when a token names a kid we do not know, so a flood
# of forged kids cannot turn into a flood of fetches.
MIN_REFRESH_SECONDS = 5.0
KEYS_MAX_AGE_SECONDS = 3600.0
# After a failed fetch, wait this long before the next one, doubling per failure up to the max.
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 10.0


class KeyFetchError(jose.TokenError):
    """No key set could be fetched, and none is cached."""


@dataclass(frozen=True)
class IapIdentity:
    email: str
    subject: str


class KeySet:
    """A JWK set fetched from a URL, cached, refreshed when a token names an unknown kid.

    The fetch runs outside the lock with at most one in flight: threads that know the kid they
    need keep verifying with the cached keys meanwhile, and only threads with nothing usable wait
    for the fetch. A failed fetch keeps the last good keys and backs off exponentially.
    """

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
        self._attempted_at: float | None = None
        self._not_before = 0.0
        self._failures = 0
        self._last_error = ""
        self._in_flight: threading.Event | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _wants_fetch(self, kid: str, now: float) -> bool:
        if now < self._not_before:
            return False
        if self._fetched_at is None or now - self._fetched_at > KEYS_MAX_AGE_SECONDS:
            return True
        recent = self._attempted_at is not None and now - self._attempted_at < MIN_REFRESH_SECONDS
        return kid not in self._keys and not recent

    def key_for(self, kid: str) -> jose.PublicKey | None:
        with self._lock:
            key = self._keys.get(kid)
            if not self._wants_fetch(kid, self._clock()):
                return self._found(key)
            event = self._in_flight
            if event is None:
                self._in_flight = event = threading.Event()
                mine = True
            else:
                mine = False
        if mine:
            self._run_fetch(event)
        elif key is None:
            event.wait(FETCH_TIMEOUT_SECONDS + 1)
        with self._lock:
            return self._found(self._keys.get(kid))

    def _found(self, key: jose.PublicKey | None) -> jose.PublicKey | None:
        if key is None and not self._keys and self._last_error:
            raise KeyFetchError(f"cannot fetch IAP keys: {self._last_error}")
        return key

    def _run_fetch(self, event: threading.Event) -> None:
        started = self._clock()
        try:
            keys = jose.keys_from_jwks(self._fetch(self.url))
            error = "" if keys else "the key set holds no usable key"
        except Exception as e:  # network, HTTP status, JSON: all mean "no new keys"
            keys, error = {}, (str(e).splitlines() or [type(e).__name__])[0][:200]
        with self._lock:
            self.fetches += 1
            self._attempted_at = started
            if error:
                self._failures += 1
                backoff = BACKOFF_FIRST_SECONDS * 2 ** (self._failures - 1)
                self._not_before = self._clock() + min(BACKOFF_MAX_SECONDS, backoff)
                self._last_error = error
            else:
                self._keys, self._fetched_at = keys, started
                self._failures, self._not_before, self._last_error = 0, 0.0, ""
            self._in_flight = None
        event.set()


def _fetch_json(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=FETCH_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


class IapVerifier:
    def __init__(
        self, audience: str, keys: KeySet, leeway: int = jose.DEFAULT_LEEWAY_SECONDS
    ) -> None:
        self.audience = audience
        self.keys = keys
        self.leeway = leeway

    def verify(self, assertion: str | None) -> IapIdentity:
        if not assertion:
            raise jose.TokenError(f"missing {IAP_HEADER} header: requests must come through IAP")
        claims = jose.verify(
            assertion,
            self.keys.key_for,
            algorithms=["ES256"],
            audience=self.audience,
            issuers=[IAP_ISSUER],
            leeway=self.leeway,
        )
        email = claims.get("email")
        subject = claims.get("sub")
        if not isinstance(email, str) or "@" not in email or not isinstance(subject, str):
            raise jose.TokenError("assertion has no email or subject")
        # IAP prefixes identities with the identity source, e.g. "accounts.google.com:".
        return IapIdentity(email=email.split(":", 1)[-1].lower(), subject=subject)
