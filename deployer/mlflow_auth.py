"""The MLflow client plugin: every request to the IAP-protected server carries a valid token.

Installing this package registers the `mlflow.request_auth_provider` entry point `deployer-iap`.
MLflow uses it when `MLFLOW_TRACKING_AUTH=deployer-iap`; it calls `get_auth()` on every request,
so the token lives in a per-process cache (`deployer.tokens.TokenCache`): minted once, shared by
all threads, refreshed before it expires, and re-minted once when the server answers 401.

Whose identity: after `deployer login`, the person's own (an ID token for the allowlisted OAuth
client, see `deployer.user_login`), so runs show their email; otherwise the shared client
service account (CI, groups, people who have not logged in).

Settings (`deployer env` prints them for a deployed stack):
    MLFLOW_TRACKING_URI          the service URL
    MLFLOW_IAP_SERVICE_ACCOUNT   the client service account to sign as (mlflow-log-pusher@…)
    MLFLOW_IAP_AUDIENCE          optional; defaults to the service URL with any path
    MLFLOW_IAP_TOKEN_LIFETIME    optional; seconds, at most 3600
    MLFLOW_IAP_IDENTITY          auto (default: your login if any, else the service account),
                                 personal (require `deployer login`) or service-account
    MLFLOW_WAKE_MAX_WAIT_SECONDS optional; how long to wait out a sleeping database's wake
                                 (503 + Retry-After), default 300
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import requests
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from requests.utils import rewind_body

from deployer import retry_after, user_login
from deployer.tokens import MAX_LIFETIME_SECONDS, TokenCache, TokenError, TokenMinter, audience_for

AUTH_NAME = "deployer-iap"
ENV_SERVICE_ACCOUNT = "MLFLOW_IAP_SERVICE_ACCOUNT"
ENV_AUDIENCE = "MLFLOW_IAP_AUDIENCE"
ENV_LIFETIME = "MLFLOW_IAP_TOKEN_LIFETIME"
ENV_IDENTITY = "MLFLOW_IAP_IDENTITY"
IDENTITIES = ("auto", "personal", "service-account")
# Files at least this big go up in parts straight to GCS (Cloud Run caps bodies at 32 MiB).
MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024

_caches: dict[tuple[str, ...], TokenCache] = {}
_caches_lock = threading.Lock()


def settings_from_env(env: Mapping[str, str]) -> tuple[str, str | None, int]:
    audience = env.get(ENV_AUDIENCE) or ""
    if not audience:
        url = env.get("MLFLOW_TRACKING_URI", "")
        if not url.startswith("https://") and not url.startswith("http://"):
            raise TokenError(
                "MLFLOW_TRACKING_URI must be the server's URL (https://…run.app) for "
                f"MLFLOW_TRACKING_AUTH={AUTH_NAME}"
            )
        audience = audience_for(url)
    raw = env.get(ENV_LIFETIME) or str(MAX_LIFETIME_SECONDS)
    try:
        lifetime = int(raw)
    except ValueError:
        raise TokenError(f"{ENV_LIFETIME}={raw!r} is not a whole number of seconds") from None
    return audience, env.get(ENV_SERVICE_ACCOUNT) or None, lifetime


def personal_login(env: Mapping[str, str]) -> user_login.StoredLogin | None:
    """The person's stored login when this environment should use it, else None."""
    choice = (env.get(ENV_IDENTITY) or "auto").strip().lower()
    if choice not in IDENTITIES:
        raise TokenError(f"{ENV_IDENTITY}={choice!r} is not one of {', '.join(IDENTITIES)}")
    if choice == "service-account":
        return None
    path = user_login.login_path(env)
    stored = user_login.load(path)
    wanted_client = env.get(user_login.ENV_CLIENT_ID)
    if stored is not None and wanted_client and stored.client_id != wanted_client:
        stored = None  # a login for another deployment's OAuth client
    if stored is None and choice == "personal":
        raise TokenError(
            f"{ENV_IDENTITY}=personal but you have not signed in: run `deployer login` "
            f"(it keeps your sign-in in {path})"
        )
    return stored


Minter = TokenMinter | user_login.PersonalTokenMinter


def minter_for(
    env: Mapping[str, str], lifetime: int | None = None
) -> tuple[tuple[str, ...], Minter]:
    """Who the tokens for this environment are minted as, for the plugin and `deployer token`
    alike: the person's stored login (see `personal_login`), else the shared client account.
    Returns a key naming that identity (for caching) and its minter."""
    stored = personal_login(env)
    if stored is not None:
        return ("personal", stored.client_id, stored.refresh_token), (
            user_login.PersonalTokenMinter(stored)
        )
    audience, service_account, default_lifetime = settings_from_env(env)
    lifetime = lifetime or default_lifetime
    key = ("service-account", audience, service_account or "", str(lifetime))
    return key, TokenMinter(audience, service_account, lifetime)


def cache_for(env: Mapping[str, str] | None = None) -> TokenCache:
    env = os.environ if env is None else env
    key, minter = minter_for(env)
    with _caches_lock:
        if key not in _caches:
            _caches[key] = TokenCache(minter)  # type: ignore[arg-type]
        return _caches[key]


class IapBearerAuth(requests.auth.AuthBase):
    """Adds `Authorization: Bearer <token>`; on a 401, re-mints once and resends; on 503 +
    Retry-After (the server waking its sleeping database), waits and resends within a budget
    (`deployer.retry_after`, MLFLOW_WAKE_MAX_WAIT_SECONDS)."""

    def __init__(
        self, cache: TokenCache, wake_wait: retry_after.RetryAfterHook | None = None
    ) -> None:
        self.cache = cache
        self.wake_wait = wake_wait

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.cache.get()}"
        request.register_hook("response", self._retry_once_on_401)
        if self.wake_wait is not None:
            request.register_hook("response", self.wake_wait)
        return request

    def _retry_once_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or request.headers.get("X-IAP-Retry") == "1":
            return response
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.cache.invalidate(sent)
        retry = request.copy()
        if getattr(request, "_body_position", None) is not None:
            rewind_body(retry)
        retry.headers["Authorization"] = f"Bearer {self.cache.get()}"
        retry.headers["X-IAP-Retry"] = "1"
        response.content  # noqa: B018 - release the connection before reusing it
        response.close()
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second


class IapAuthProvider(RequestAuthProvider):
    def get_name(self) -> str:
        return AUTH_NAME

    def get_auth(self) -> IapBearerAuth:
        os.environ.setdefault(
            "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(MULTIPART_THRESHOLD_BYTES)
        )
        try:
            wake_wait = retry_after.RetryAfterHook.from_env()
        except ValueError as e:
            raise TokenError(str(e)) from None
        return IapBearerAuth(cache_for(), wake_wait)
