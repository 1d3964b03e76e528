"""Tokens that IAP accepts, minted from whatever Google identity this machine has.

With IAP's Google-managed OAuth client, programmatic clients cannot send a person's own ID
token. What IAP accepts is a JWT signed by a service account (`iss` = `sub` = its email, `aud` =
the protected URL). So every credential source ends in the same token, signed by the stack's
client service account (`mlflow-log-pusher`):

1. a person's application-default credentials (`gcloud auth application-default login`):
   IAM Credentials `signJwt` as the client service account (token creator, granted by Terraform
   to `web_app_users`);
2. a service-account key file: signed locally when it is the client service account's own key,
   else `signJwt` as above;
3. impersonated-service-account ADC: `signJwt` with the source credentials;
4. the metadata server or Workload Identity Federation (CI): `signJwt` as above.

Tokens live an hour; `TokenCache` shares one per process across threads and refreshes it before
it expires, so a ten-hour training run never sends an expired token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.auth import impersonated_credentials
from google.auth import jwt as google_jwt
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from deployer.errors import DeployerError
from deployer.google_iam import IamCredentialsClient, IamError

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MAX_LIFETIME_SECONDS = 3600  # IAP refuses service-account JWTs that live longer
ADC_LOGIN = "gcloud auth application-default login"


class TokenError(DeployerError, RuntimeError):
    """One line: what is missing, and the command or role that fixes it."""


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: float
    service_account: str
    source: str


def audience_for(url: str) -> str:
    """The `aud` IAP expects of a service-account JWT: the service URL, any path."""
    base = url.rstrip("/")
    if base.endswith("/*"):
        return base
    return f"{base}/*"


def _claims(service_account_email: str, audience: str, lifetime: int) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": service_account_email,
        "sub": service_account_email,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
    }


def _load_credentials() -> Any:
    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError:
        raise TokenError(
            f"no Google credentials found on this machine: run `{ADC_LOGIN}`, or point "
            "GOOGLE_APPLICATION_CREDENTIALS at a credentials file"
        ) from None
    except google.auth.exceptions.GoogleAuthError as e:
        raise TokenError(f"cannot load Google credentials: {_first_line(e)}") from None
    return credentials


class TokenMinter:
    def __init__(
        self,
        audience: str,
        service_account_email: str | None = None,
        lifetime: int = MAX_LIFETIME_SECONDS,
        load_credentials: Callable[[], Any] = _load_credentials,
    ) -> None:
        if not 1 <= lifetime <= MAX_LIFETIME_SECONDS:
            raise TokenError(f"token lifetime must be 1 to {MAX_LIFETIME_SECONDS} seconds")
        self.audience = audience
        self.service_account = service_account_email
        self.lifetime = lifetime
        self._load = load_credentials
        self._credentials: Any = None

    def _describe(self, credentials: Any) -> str:
        if isinstance(credentials, user_credentials.Credentials):
            return "your application-default credentials"
        if isinstance(credentials, service_account.Credentials):
            return f"the key file of {credentials.service_account_email}"
        if isinstance(credentials, impersonated_credentials.Credentials):
            return "impersonated application-default credentials"
        return f"{type(credentials).__module__.split('.')[-1]} credentials"

    def mint(self) -> MintedToken:
        if self._credentials is None:
            self._credentials = self._load()
        credentials = self._credentials
        source = self._describe(credentials)
        if isinstance(credentials, service_account.Credentials):
            own = credentials.service_account_email
            if self.service_account in (None, own):
                claims = _claims(own, self.audience, self.lifetime)
                token = google_jwt.encode(credentials.signer, claims).decode()
                return MintedToken(token, claims["exp"], own, source)

        target = self.service_account
        signer_credentials = credentials
        if isinstance(credentials, impersonated_credentials.Credentials):
            target = target or credentials.service_account_email
            signer_credentials = credentials._source_credentials
        if target is None:
            target = self._own_service_account(credentials)
        if target is None:
            raise TokenError(
                "IAP does not accept a person's own token: pass --impersonate "
                "mlflow-log-pusher@PROJECT.iam.gserviceaccount.com (or set "
                "MLFLOW_IAP_SERVICE_ACCOUNT); `deployer env` prints it for the deployed stack"
            )
        claims = _claims(target, self.audience, self.lifetime)
        iam = IamCredentialsClient(AuthorizedSession(signer_credentials))
        try:
            token = iam.sign_jwt(target, claims)
        except google.auth.exceptions.RefreshError as e:
            raise TokenError(
                f"{source} could not be refreshed ({_first_line(e)}): {_refresh_fix(credentials)}"
            ) from None
        except (google.auth.exceptions.TransportError, requests.RequestException) as e:
            raise TokenError(
                f"cannot reach Google's IAM Credentials API: {_first_line(e)}"
            ) from None
        except IamError as e:
            if e.status in (401, 403):
                raise TokenError(
                    f"{source} may not sign as {target}: it needs "
                    f"roles/iam.serviceAccountTokenCreator on {target} (the project owner adds "
                    "you to web_app_users in the vars file and re-runs `deployer apply`)"
                ) from None
            raise TokenError(f"IAM Credentials failed for {target}: {e}") from None
        return MintedToken(token, claims["exp"], target, source)

    @staticmethod
    def _own_service_account(credentials: Any) -> str | None:
        email = getattr(credentials, "service_account_email", None)
        if email in (None, "default") and hasattr(credentials, "refresh"):
            try:
                credentials.refresh(Request())
            except google.auth.exceptions.GoogleAuthError as e:
                raise TokenError(f"cannot read this machine's identity: {_first_line(e)}") from None
            email = getattr(credentials, "service_account_email", None)
        return email if email and email != "default" else None


def _refresh_fix(credentials: Any) -> str:
    if isinstance(credentials, service_account.Credentials):
        return (
            "the key may have been deleted or disabled: create a new key, or use "
            f"`{ADC_LOGIN}` instead"
        )
    if isinstance(credentials, user_credentials.Credentials | impersonated_credentials.Credentials):
        return f"run `{ADC_LOGIN}` again"
    return "check the identity this machine runs as (its service account or federation config)"


def _first_line(e: BaseException) -> str:
    return (str(e).strip() or repr(e)).splitlines()[0][:300]


class TokenCache:
    """One token per process, shared across threads, refreshed before it expires."""

    def __init__(self, minter: TokenMinter, clock: Callable[[], float] = time.time) -> None:
        self.minter = minter
        self._clock = clock
        self._token: MintedToken | None = None
        self._lock = threading.Lock()
        self.mints = 0
        # Refresh with a quarter of the lifetime left (at most five minutes before expiry).
        self.margin = min(300.0, minter.lifetime / 4)

    def _fresh(self, token: MintedToken | None) -> bool:
        return token is not None and token.expires_at - self._clock() > self.margin

    def get(self) -> str:
        token = self._token
        if self._fresh(token):
            return token.token  # type: ignore[union-attr]
        with self._lock:
            if not self._fresh(self._token):
                self._token = self.minter.mint()
                self.mints += 1
            return self._token.token  # type: ignore[union-attr]

    def invalidate(self, rejected: str) -> None:
        """Drop the token the server refused, unless another thread already replaced it."""
        with self._lock:
            if self._token is not None and self._token.token == rejected:
                self._token = None
