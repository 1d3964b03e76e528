"""Our server started as Cloud Run starts it: the entrypoint, configured by environment only,
against a real PostgreSQL behind a Cloud SQL-style socket folder and a GCS emulator."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.gcs import FakeGcs
from tests.support.iap_keys import IapKeys
from tests.support.postgres import Postgres
from tests.support.processes import Proc, base_env, free_port, start, wait_healthy

PROJECT_NUMBER = "123456789012"
REGION = "us-central1"
SERVICE = "mlflow"
AUDIENCE = f"/projects/{PROJECT_NUMBER}/locations/{REGION}/services/{SERVICE}"
BUCKET = "test-project-mlflow-artifacts"
# The one member allowed destructive calls (ADMIN_EMAILS).
ADMIN_EMAIL = "admin@example.com"
# Every character that breaks a hand-built database URI.
DB_PASSWORD = "p@ss:w/rd?#%&x=y+z 1"


@dataclass
class CloudStack:
    pg: Postgres
    gcs: FakeGcs
    jwks_url: str
    db_name: str = "mlflow"
    db_user: str = "mlflow"

    def env(self, port: int, **overrides: str) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "PORT": str(port),
                "DB_ENGINE": "postgresql",
                "DB_USER": self.db_user,
                "DB_PASSWORD": DB_PASSWORD,
                "DB_NAME": self.db_name,
                "CLOUD_SQL_CONNECTION_NAME": self.pg.connection_name,
                "CLOUD_SQL_SOCKET_ROOT": str(self.pg.socket_root),
                "ARTIFACTS_DESTINATION": f"gs://{BUCKET}/artifacts",
                "ALLOWED_HOSTS": f"mlflow-abc123-uc.a.run.app,127.0.0.1:{port},localhost:{port}",
                "CORS_ALLOWED_ORIGINS": "https://mlflow-abc123-uc.a.run.app",
                "AUTH_MODE": "iap",
                "IAP_AUDIENCE": AUDIENCE,
                "IAP_JWKS_URL": self.jwks_url,
                "SERVER_WORKERS": "2",
                "DB_MAX_CONNECTIONS": "50",
                "MAX_INSTANCES": "2",
                "STORAGE_EMULATOR_HOST": self.gcs.url,
                "ADMIN_EMAILS": ADMIN_EMAIL,
            }
        )
        env.update(overrides)
        return {k: v for k, v in env.items() if v != "<unset>"}

    def entrypoint(self, mode: str, env: dict[str, str], log: Path) -> Proc:
        return start([sys.executable, "-m", "deployer.server", mode], env, log)

    def serve(self, log: Path, **overrides: str) -> tuple[Proc, str]:
        port = free_port()
        proc = self.entrypoint("serve", self.env(port, **overrides), log)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        return proc, url


@contextmanager
def running_stack(root: Path) -> Iterator[tuple[CloudStack, IapKeys]]:
    """PostgreSQL (database and user created), the GCS emulator (bucket created), IAP's keys."""
    pg = Postgres().init().start()
    gcs = keys = None
    try:
        pg.create_database("mlflow", "mlflow", DB_PASSWORD)
        gcs = FakeGcs(root / "gcs").start()
        gcs.create_bucket(BUCKET)
        keys = IapKeys(AUDIENCE)
        yield CloudStack(pg, gcs, keys.jwks_url), keys
    finally:
        if keys is not None:
            keys.close()
        if gcs is not None:
            gcs.stop()
        pg.destroy()


def migrate_and_serve(env: dict[str, str], log: Path) -> Proc:
    """The Cloud Run job (`migrate`), then the service (`serve`), from the same environment."""
    subprocess.run(
        [sys.executable, "-m", "deployer.server", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return start([sys.executable, "-m", "deployer.server"], env, log)
