"""The served application: all of MLflow's ASGI app, behind IAP's signed-header check.

`create_app` builds exactly what `mlflow server` serves under uvicorn: MLflow's FastAPI app
(OTLP `/v1/traces`, the trace, job, gateway, assistant and server-info routes) with MLflow's
Flask app mounted inside it for everything else. MLflow is neither forked nor patched; we wrap
it twice:

- outermost, `AsgiIapGuard`: every request except `/health` must carry a valid
  `x-goog-iap-jwt-assertion`, or it gets 401 and never reaches MLflow. The verified email is
  handed inward in `VERIFIED_EMAIL_HEADER`, after any client-sent copy of it is dropped.
  The verified member (admin or not, from ADMIN_EMAILS) is also set in `identity`'s context
  variable for the whole request: `identity` enforces authorship and admin rules on MLflow's
  stores, after MLflow has parsed the request, for FastAPI and Flask routes alike.
- around the Flask app, `IdentityStamper`: sets `REMOTE_USER` from that email, the way basic
  auth attributes requests, and the member again for the Flask worker thread.

Between the two, inside the check, the sleeping database's wake (`wake.wrap_asgi`, active when
DB_SLEEP_AFTER_MINUTES is set): a request that finds the database stopped starts it and gets
503 + Retry-After until it is up.

`IapMiddleware` is the same check for a plain WSGI server (kept for MLflow's Flask-only
`--app-name iap` entry point).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from deployer.server import identity, jose, wake
from deployer.server.iap import IAP_HEADER, IapVerifier, KeySet
from deployer.server.settings import AuthMode, ServerSettings, load_settings

_logger = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/health"})
IDENTITY_ENVIRON_KEY = "deployer.iap.email"
# Set by the guard only; a client's own copy is removed before MLflow sees the request.
VERIFIED_EMAIL_HEADER = "x-deployer-verified-email"
_VERIFIED_ENVIRON = "HTTP_" + VERIFIED_EMAIL_HEADER.upper().replace("-", "_")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _rejection(error: jose.TokenError) -> bytes:
    """The 401 body MLflow clients understand, for the WSGI and the ASGI path alike."""
    message = f"IAP assertion rejected: {error}"
    return json.dumps({"error_code": "UNAUTHENTICATED", "message": message}).encode()


def _unauthorized(start_response: Callable[..., Any], error: jose.TokenError) -> list[bytes]:
    body = _rejection(error)
    start_response(
        "401 Unauthorized",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _attribute(environ: dict[str, Any], email: str) -> None:
    """Who made the request, where MLflow looks (basic-auth-style REMOTE_USER, read by MLflow
    features that attribute work). Authorship itself is enforced on the stores (`identity`)."""
    environ[IDENTITY_ENVIRON_KEY] = email
    environ["REMOTE_USER"] = email


def member_for(email: str, admins: frozenset[str]) -> identity.Member:
    return identity.Member(email=email, admin=email.lower() in admins)


class IapMiddleware:
    """WSGI middleware: verify the assertion, then make the member known to the stores.

    Authorship and admin rules are enforced by `identity` on MLflow's stores, after MLflow has
    parsed the request; this only says who is asking.
    """

    def __init__(
        self, app: WSGIApp, verifier: IapVerifier, admins: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.admins = admins

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        path = environ.get("PATH_INFO", "")
        if path in EXEMPT_PATHS:
            return self.app(environ, start_response)
        try:
            who = self.verifier.verify(environ.get("HTTP_X_GOOG_IAP_JWT_ASSERTION"))
        except jose.TokenError as e:
            _logger.warning("rejected %s %s: %s", environ.get("REQUEST_METHOD"), path, e)
            return _unauthorized(start_response, e)
        _attribute(environ, who.email)
        with identity.acting_as(member_for(who.email, self.admins)):
            return self.app(environ, start_response)


class IdentityStamper:
    """WSGI middleware inside `AsgiIapGuard`: attribute the request to the guard's identity.

    The guard already set the member for the request's context, which the Flask worker thread
    inherits; setting it here again keeps the stores' rules from depending on that.
    """

    def __init__(self, app: WSGIApp, admins: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.admins = admins

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        email = environ.pop(_VERIFIED_ENVIRON, None)
        if not email:
            return self.app(environ, start_response)
        _attribute(environ, email)
        with identity.acting_as(member_for(email, self.admins)):
            return self.app(environ, start_response)


async def _send_401(send: Any, error: jose.TokenError) -> None:
    body = _rejection(error)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AsgiIapGuard:
    """ASGI guard in front of MLflow's whole app: FastAPI routes and the mounted Flask app."""

    def __init__(
        self, app: Any, verifier: IapVerifier, admins: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.admins = admins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        verified = VERIFIED_EMAIL_HEADER.encode()
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != verified]
        scope = {**scope, "headers": headers}
        if scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        header = IAP_HEADER.encode()
        assertion = next((v.decode("latin-1") for k, v in headers if k.lower() == header), None)
        try:
            who = self.verifier.verify(assertion)
        except jose.TokenError as e:
            _logger.warning("rejected %s %s: %s", scope.get("method"), scope.get("path"), e)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _send_401(send, e)
            return
        headers.append((verified, who.email.encode("latin-1")))
        # Routes served outside Flask (OTLP traces, the gateway) reach the stores from here; the
        # mounted Flask app runs in a worker thread, which inherits this context too.
        with identity.acting_as(member_for(who.email, self.admins)):
            await self.app(scope, receive, send)


def verifier_for(settings: ServerSettings) -> IapVerifier:
    if settings.iap_audience is None:  # pragma: no cover - settings enforce it for AUTH_MODE=iap
        raise RuntimeError("IAP_AUDIENCE is required for the iap app")
    return IapVerifier(settings.iap_audience, KeySet(settings.iap_jwks_url))


def verifier_from_env() -> IapVerifier:
    return verifier_for(load_settings(os.environ))


def create_asgi_app() -> Any:
    """The app the entrypoint serves: MLflow's FastAPI app, guarded as `AUTH_MODE` says."""
    from deployer.server import gcs_signing

    settings = load_settings(os.environ)
    gcs_signing.install(settings)
    if settings.auth_mode is AuthMode.BASIC:
        # MLflow's basic-auth app builds its FastAPI app itself when told it runs under uvicorn.
        os.environ["_MLFLOW_SGI_NAME"] = "uvicorn"
        from mlflow.server.auth import create_app as basic_auth_app

        return wake.wrap_asgi(basic_auth_app(), os.environ)
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    if settings.auth_mode is AuthMode.NONE:
        return wake.wrap_asgi(create_fastapi_app(flask_app), os.environ)
    _install_identity(flask_app, settings)
    flask_app.wsgi_app = IdentityStamper(flask_app.wsgi_app, settings.admin_emails)
    return guard(create_fastapi_app(flask_app), settings, os.environ)


def guard(app: Any, settings: ServerSettings, env: Mapping[str, str]) -> AsgiIapGuard:
    """IAP's check outermost, then the sleeping database's wake (deployer/server/wake.py; a
    no-op unless DB_SLEEP_AFTER_MINUTES is set): only verified requests are recorded as use and
    may wake the database; while it wakes they get 503 + Retry-After, FastAPI and Flask routes
    alike."""
    return AsgiIapGuard(wake.wrap_asgi(app, env), verifier_for(settings), settings.admin_emails)


def _install_identity(flask_app: Any, settings: ServerSettings) -> None:
    """Authorship and admin rules on MLflow's stores, and the Flask-side request hooks (IAP
    mode only: with no verified member, admin-only calls would be refused to everyone)."""
    identity.install(settings.artifacts_destination)
    identity.install_flask_hooks(flask_app)


def create_app():
    """Factory for `mlflow server --app-name iap` (gunicorn: Flask app; uvicorn: ASGI app)."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        return create_asgi_app()
    from mlflow.server import app as flask_app

    from deployer.server import gcs_signing

    settings = load_settings(os.environ)
    _install_identity(flask_app, settings)
    # The wake inside the IAP check, as in `guard`.
    flask_app.wsgi_app = IapMiddleware(
        wake.wrap_wsgi(flask_app.wsgi_app, os.environ),
        verifier_for(settings),
        settings.admin_emails,
    )
    gcs_signing.install(settings)
    return flask_app
