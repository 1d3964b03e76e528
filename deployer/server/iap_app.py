"""The `iap` server app: MLflow's own app behind IAP's signed-header check.

`mlflow server --app-name iap` loads `create_app` through the `mlflow.app` entry point, the way
MLflow supports custom server apps (the basic-auth app works the same way), so MLflow itself is
not forked or patched. Every request except `/health` must carry a valid
`x-goog-iap-jwt-assertion`; otherwise it gets 401 and never reaches MLflow.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from deployer import jose
from deployer.server import identity
from deployer.server.iap import IAP_HEADER, IapVerifier, KeySet
from deployer.server.settings import ServerSettings, load_settings

_logger = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/health"})
IDENTITY_ENVIRON_KEY = "deployer.iap.email"
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
        environ[IDENTITY_ENVIRON_KEY] = who.email
        # Basic-auth-style attribution for MLflow features that read the REMOTE_USER.
        environ["REMOTE_USER"] = who.email
        with identity.acting_as(member_for(who.email, self.admins)):
            return self.app(environ, start_response)


def member_for(email: str, admins: frozenset[str]) -> identity.Member:
    return identity.Member(email=email, admin=email.lower() in admins)


class AsgiIapGuard:
    """ASGI guard for routes MLflow serves outside Flask when it runs under uvicorn."""

    def __init__(
        self, app: Any, verifier: IapVerifier, admins: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.admins = admins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        header = IAP_HEADER.encode()
        assertion = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == header), None
        )
        try:
            who = self.verifier.verify(assertion)
        except jose.TokenError as e:
            body = _rejection(e)
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        # Routes served outside Flask (OTLP traces, the gateway) reach the stores from here.
        with identity.acting_as(member_for(who.email, self.admins)):
            await self.app(scope, receive, send)


def verifier_from_env(settings: ServerSettings | None = None) -> IapVerifier:
    settings = settings or load_settings(os.environ)
    if settings.iap_audience is None:  # pragma: no cover - settings enforce it for AUTH_MODE=iap
        raise RuntimeError("IAP_AUDIENCE is required for the iap app")
    return IapVerifier(settings.iap_audience, KeySet(settings.iap_jwks_url))


def create_app():
    """Factory for `mlflow server --app-name iap` (gunicorn: Flask app; uvicorn: ASGI app)."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app

    settings = load_settings(os.environ)
    verifier = verifier_from_env(settings)
    admins = settings.admin_emails
    identity.install(settings.artifacts_destination)
    identity.install_flask_hooks(flask_app)
    flask_app.wsgi_app = IapMiddleware(flask_app.wsgi_app, verifier, admins)
    from deployer.server import gcs_signing

    gcs_signing.install_from_env()
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return AsgiIapGuard(create_fastapi_app(flask_app), verifier, admins)
    return flask_app
