"""A local stand-in for IAP in front of the Cloud Run service.

It admits a request only with a Google-style token in `Authorization` (or
`Proxy-Authorization`): a service-account-signed JWT (`iss` = `sub` = the account, verified
against that account's published keys, `aud` = the service URL) or a Google-issued ID token,
each checked for signature, audience, issuer and expiry, and whose identity is in the member
list (`user:`, `serviceAccount:`, `domain:`). It strips any `x-goog-*` header the client sent
and forwards with a freshly signed ES256 `x-goog-iap-jwt-assertion`, as IAP does.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

import requests

from deployer.server import jose
from tests.support import jws
from tests.support.google_fakes import GOOGLE_ISSUER, GoogleFakes
from tests.support.http import LocalHttpServer, Request, Response
from tests.support.iap_keys import IapKeys

_HOP = {
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "authorization",
    "proxy-authorization",
    "accept-encoding",
}


class IapProxy:
    def __init__(
        self,
        upstream: str,
        keys: IapKeys,
        fakes: GoogleFakes,
        members: Iterable[str],
        leeway: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.keys = keys
        self.fakes = fakes
        self.members = set(members)
        # OAuth client IDs allowlisted for programmatic access (google_iap_settings ->
        # access_settings.oauth_settings.programmatic_clients): a person's Google ID token for
        # one of them is accepted as that person.
        self.programmatic_clients: set[str] = set()
        self.leeway = leeway
        self.outcomes: Counter[str] = Counter()
        self.identities: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._session = threading.local()
        self.server = LocalHttpServer(self._route)
        self.url = self.server.url

    def _audiences(self) -> set[str]:
        return {self.url, f"{self.url}/", f"{self.url}/*"}

    def identify(self, token: str) -> str:
        """The verified identity behind a bearer token, or TokenError saying why not."""
        header = jws.parse(token).header
        claims = jws.parse(token).claims
        if claims.get("iss") == GOOGLE_ISSUER:
            verified = jose.verify(
                token,
                self.fakes.google_public_key,
                algorithms=["RS256"],
                audience=self._audiences() | self.programmatic_clients,
                issuers=[GOOGLE_ISSUER],
                leeway=self.leeway,
            )
            return str(verified["email"])
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or claims.get("sub") != issuer:
            raise jose.TokenError("a service-account JWT needs iss == sub == the account")
        account = self.fakes.accounts.get(issuer)
        if account is None or header.get("kid") != account.key_id:
            raise jose.TokenError(f"no published key {header.get('kid')!r} for {issuer!r}")
        verified = jose.verify(
            token,
            lambda kid: account.key.public_key(),
            algorithms=["RS256"],
            audience=self._audiences(),
            issuers=[issuer],
            leeway=self.leeway,
        )
        if verified["exp"] - verified.get("iat", verified["exp"]) > 3600:
            raise jose.TokenError("service-account JWTs may live at most an hour")
        return issuer

    def _allowed(self, email: str) -> bool:
        kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
        domain = email.rsplit("@", 1)[-1]
        return f"{kind}:{email}" in self.members or f"domain:{domain}" in self.members

    def _deny(self, status: int, outcome: str) -> Response:
        with self._lock:
            self.outcomes[outcome] += 1
        return Response(status, f"IAP stand-in: {outcome}")

    def _route(self, req: Request) -> Response:
        auth = req.headers.get("proxy-authorization") or req.headers.get("authorization") or ""
        if not auth.startswith("Bearer "):
            return self._deny(401, "no token")
        try:
            email = self.identify(auth[len("Bearer ") :])
        except (jose.TokenError, KeyError, TypeError, ValueError) as e:
            return self._deny(401, f"invalid token: {e}")
        if not self._allowed(email):
            return self._deny(403, f"{email} is not a member")
        headers = {
            k: v for k, v in req.headers.items() if k not in _HOP and not k.startswith("x-goog-")
        }
        headers["x-goog-iap-jwt-assertion"] = self.keys.assertion(email)
        headers["host"] = req.headers.get("host", "")
        session = getattr(self._session, "s", None)
        if session is None:
            session = self._session.s = requests.Session()
        url = self.upstream + req.path + (f"?{req.raw_query}" if req.raw_query else "")
        upstream = session.request(
            req.method,
            url,
            data=req.body or None,
            headers=headers,
            timeout=300,
            allow_redirects=False,
        )
        with self._lock:
            self.outcomes[f"forwarded {upstream.status_code}"] += 1
            self.identities[email] += 1
        keep = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in _HOP | {"content-encoding"}
        }
        return Response(upstream.status_code, upstream.content, keep)

    def close(self) -> None:
        self.server.close()
