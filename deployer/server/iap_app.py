"""The `iap` server app: MLflow's own app behind IAP's signed-header check.

`mlflow server --app-name iap` loads `create_app` through the `mlflow.app` entry point, the way
MLflow supports custom server apps (the basic-auth app works the same way), so MLflow itself is
not forked or patched. Every request except `/health` must carry a valid
`x-goog-iap-jwt-assertion`; otherwise it gets 401 and never reaches MLflow.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from deployer import jose
from deployer.server import identity
from deployer.server.iap import IAP_HEADER, IapVerifier, KeySet
from deployer.server.settings import load_settings

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


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    return stream.read()


class IapMiddleware:
    """WSGI middleware: verify the assertion, then enforce the identity on created entities."""

    def __init__(self, app: WSGIApp, verifier: IapVerifier) -> None:
        self.app = app
        self.verifier = verifier

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
        if identity.needs_stamp(environ.get("REQUEST_METHOD", ""), path):
            raw = identity.stamp_bytes(path, _read_body(environ), who.email)
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
        return self.app(environ, start_response)


class AsgiIapGuard:
    """ASGI guard for routes MLflow serves outside Flask when it runs under uvicorn."""

    def __init__(self, app: Any, verifier: IapVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        header = IAP_HEADER.encode()
        assertion = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == header), None
        )
        try:
            self.verifier.verify(assertion)
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
        await self.app(scope, receive, send)


def verifier_from_env() -> IapVerifier:
    settings = load_settings(os.environ)
    if settings.iap_audience is None:  # pragma: no cover - settings enforce it for AUTH_MODE=iap
        raise RuntimeError("IAP_AUDIENCE is required for the iap app")
    return IapVerifier(settings.iap_audience, KeySet(settings.iap_jwks_url))


def create_app():
    """Factory for `mlflow server --app-name iap` (gunicorn: Flask app; uvicorn: ASGI app)."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app

    verifier = verifier_from_env()
    flask_app.wsgi_app = IapMiddleware(flask_app.wsgi_app, verifier)
    from deployer.server import gcs_signing

    gcs_signing.install_from_env()
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return AsgiIapGuard(create_fastapi_app(flask_app), verifier)
    return flask_app
