"""A pytest plugin that runs MLflow's own REST tests against a server in a separate process.

Loaded into a run of `tests/tracking/test_rest_tracking.py` from an MLflow checkout (see
`bench/fidelity.py`), it replaces the file's in-process `ServerThread` with a launcher of a real
server process on the same database and artifact folder, so the tests' assertions run unchanged
against any server. `FIDELITY_SERVER` picks which:

- `stock`: `mlflow server` with one worker, proxied artifacts (how ours serves artifacts);
- `ours`: our entrypoint (`python -m deployer.server serve`) with `AUTH_MODE=iap`. Every HTTP
  request of the test process carries a freshly signed `x-goog-iap-jwt-assertion`, as IAP adds
  it; the server verifies it against a local key set and stamps that identity.

MLflow's checkout has a `tests` package of its own, which shadows ours: nothing here may import
from `tests` (PyJWT signs the assertions).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from deployer.server.settings import IAP_ISSUER

AUDIENCE = "/projects/123456789012/locations/us-central1/services/mlflow"
EMAIL = "fidelity@example.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Keys:
    """One ES256 key, its JWK set served on loopback, and assertions signed with it."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:8]
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        body = json.dumps({"keys": [jwk | {"kid": self.kid, "alg": "ES256", "use": "sig"}]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwk"

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": IAP_ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
            "sub": "accounts.google.com:1",
            "email": EMAIL,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})


_KEYS: _Keys | None = None


def _keys() -> _Keys:
    global _KEYS
    if _KEYS is None:
        _KEYS = _Keys()
        _add_assertion_to_every_request(_KEYS)
    return _KEYS


def _add_assertion_to_every_request(keys: _Keys) -> None:
    """What IAP does in front of the service, done in the client process instead."""
    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        request.headers["x-goog-iap-jwt-assertion"] = keys.assertion()
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send


def _stores() -> tuple[str, str]:
    """The database and artifact folder the test's fixture initialised in this process."""
    from mlflow.server import handlers

    store = handlers._get_tracking_store()
    root = store.artifact_root_uri
    path = root.removeprefix("file://") if root.startswith("file://") else root
    return store.db_uri, path


def _argv_env(kind: str, port: int, db_uri: str, artifacts: str) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_MLFLOW_SERVER")}
    if kind == "stock":
        argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db_uri]
        argv += ["--artifacts-destination", artifacts, "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--workers", "1"]
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        return argv, env
    env.update(
        PORT=str(port),
        SERVER_HOST="127.0.0.1",
        SERVER_WORKERS="1",
        BACKEND_STORE_URI=db_uri,
        ARTIFACTS_DESTINATION=artifacts,
        AUTH_MODE="iap",
        IAP_AUDIENCE=AUDIENCE,
        IAP_JWKS_URL=_keys().url,
        # The tests act as the deployment's owner, an admin by default (web_app_admins).
        ADMIN_EMAILS=EMAIL,
    )
    return [sys.executable, "-m", "deployer.server", "serve"], env


class ProcessServer:
    """Drop-in for MLflow's `ServerThread(app, port)`: the app argument is ignored."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        kind = os.environ.get("FIDELITY_SERVER", "ours")
        db_uri, artifacts = _stores()
        argv, env = _argv_env(kind, self.port, db_uri, artifacts)
        self.log = Path(tempfile.mkstemp(prefix=f"fidelity-{kind}-", suffix=".log")[1])
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return self.url
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{kind} server not healthy in 120 s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _server_in_its_own_process(request: pytest.FixtureRequest, monkeypatch: Any) -> None:
    module = request.module
    if hasattr(module, "ServerThread"):
        monkeypatch.setattr(module, "ServerThread", ProcessServer)


def pytest_configure(config: pytest.Config) -> None:
    # Two async tests carry pytest-asyncio's marker; without that plugin they fail on stock and
    # ours alike, which the comparison ignores. Registering the marker lets the file collect.
    config.addinivalue_line("markers", "asyncio: needs pytest-asyncio (not installed here)")
