"""The whole stack on one machine, as close to GCP as can be run here. Loopback only.

    client (deployer token / the deployer-iap plugin)
      -> IAP stand-in: verifies the Google-style token (signature, audience, issuer, expiry,
         member list from the vars file), strips x-goog-*, adds a fresh ES256 assertion
      -> our entrypoint, configured only by the environment Terraform sets (the variable names
         are read from terraform/modules/service/main.tf, so the two cannot drift)
      -> PostgreSQL on a unix socket in CLOUD_SQL_SOCKET_ROOT/PROJECT:REGION:INSTANCE
      -> fake-gcs-server behind a front for GCS's XML multipart API and signed URLs
    plus local fakes of Google's token, IAM Credentials and metadata endpoints.

Used by tests/integration and bench/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import psycopg2

from deployer import vars as vars_file
from tests.support.cloud_server import AUDIENCE, BUCKET, DB_PASSWORD
from tests.support.gcs import FakeGcs
from tests.support.gcs_front import GcsFront
from tests.support.google_fakes import GoogleFakes
from tests.support.iap_keys import IapKeys
from tests.support.iap_proxy import IapProxy
from tests.support.postgres import Postgres
from tests.support.processes import Proc, base_env, free_port, start, wait_healthy

REPO = Path(__file__).resolve().parents[2]
PROJECT = "test-project"
REGION = "us-central1"
CLIENT_SA = f"mlflow-log-pusher@{PROJECT}.iam.gserviceaccount.com"
RUNTIME_SA = f"mlflow-server@{PROJECT}.iam.gserviceaccount.com"
HARNESS_VARS = f"""
project_id = "{PROJECT}"
region = "{REGION}"
state_bucket = "{PROJECT}-tfstate"
web_app_users = ["user:alice@example.com", "user:bob@example.com"]
max_instances = 1
"""


def terraform_env_names() -> list[str]:
    """The variable names Terraform sets on the service (local.env plus DB_PASSWORD)."""
    with (REPO / "terraform" / "modules" / "service" / "main.tf").open() as f:
        doc = hcl2.load(f)
    env = next(loc["env"] for loc in doc["locals"] if "env" in loc)
    return [k.strip('"') for k in env] + ["DB_PASSWORD"]


@dataclass
class Stack:
    root: Path
    vars_text: str = HARNESS_VARS
    workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = vars_file.parse(self.vars_text)
        assert not self.settings.problems, self.settings.problems
        self.pg: Postgres | None = None
        self.gcs: FakeGcs | None = None
        self.front: GcsFront | None = None
        self.fakes: GoogleFakes | None = None
        self.keys: IapKeys | None = None
        self.proxy: IapProxy | None = None
        self.server: Proc | None = None
        self.port = free_port()

    # ----- start / stop ----------------------------------------------------------------------
    def start(self) -> Stack:
        self.pg = Postgres().init().start()
        self.pg.create_database("mlflow", "mlflow", DB_PASSWORD)
        self.fakes = GoogleFakes(PROJECT)
        for sa in (CLIENT_SA, RUNTIME_SA):
            self.fakes.service_account(sa)
        self.fakes.metadata_account = RUNTIME_SA
        self.fakes.allow_token_creator(RUNTIME_SA, RUNTIME_SA)
        for member in self.settings["web_app_users"]:
            self.fakes.allow_token_creator(member.split(":", 1)[1], CLIENT_SA)
        self.gcs = FakeGcs(self.root / "gcs").start()
        self.gcs.create_bucket(BUCKET)
        self.front = GcsFront(self.gcs.url, self._signer_key)
        self.keys = IapKeys(AUDIENCE)
        members = [*self.settings["web_app_users"], f"serviceAccount:{CLIENT_SA}"]
        self.proxy = IapProxy("http://unset", self.keys, self.fakes, members)
        self.proxy.upstream = f"http://127.0.0.1:{self.port}"
        self.migrate()
        self.start_server()
        return self

    def _signer_key(self, email: str):
        assert self.fakes is not None
        account = self.fakes.accounts.get(email)
        return account.key.public_key() if account else None

    def server_env(self) -> dict[str, str]:
        """Exactly the variables Terraform sets, with this machine's values."""
        assert self.pg and self.front and self.fakes and self.proxy
        proxy_host = f"127.0.0.1:{self.proxy.server.port}"
        values = {
            "AUTH_MODE": "iap",
            "IAP_AUDIENCE": AUDIENCE,
            "SERVER_WORKERS": str(self.workers),
            "SERVER_THREADS": "4",
            "DB_ENGINE": self.settings["db_engine"],
            "DB_USER": "mlflow",
            "DB_NAME": "mlflow",
            "DB_PASSWORD": DB_PASSWORD,
            "CLOUD_SQL_CONNECTION_NAME": self.pg.connection_name,
            "DB_MAX_CONNECTIONS": "100",
            "DB_RESERVED_CONNECTIONS": str(self.settings["db_reserved_connections"]),
            "MAX_INSTANCES": str(self.settings["max_instances"]),
            "ARTIFACTS_DESTINATION": f"gs://{BUCKET}/artifacts",
            "ALLOWED_HOSTS": proxy_host,
            "CORS_ALLOWED_ORIGINS": f"http://{proxy_host}",
            "SIGNING_SERVICE_ACCOUNT": RUNTIME_SA,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            # What the deployer passes when web_app_admins is empty: the deploying owner.
            "ADMIN_EMAILS": "owner@example.com",
            # As Terraform sets them with db_sleep_after_minutes = 0: this stack's database
            # never sleeps (tests/test_sleep.py covers the wake against a fake Admin API).
            "DB_SLEEP_AFTER_MINUTES": "0",
            "LAST_REQUEST_OBJECT": "",
        }
        names = terraform_env_names()
        missing = [n for n in names if n not in values]
        if missing:
            raise AssertionError(f"Terraform sets {missing}, which the harness does not supply")
        env = base_env()
        env.update({n: values[n] for n in names})
        # What Cloud Run and Google provide: the port, the socket mount, the metadata server,
        # IAP's key set, Cloud Storage and IAM Credentials (local stand-ins here).
        assert self.keys is not None
        env.update(
            {
                "PORT": str(self.port),
                "CLOUD_SQL_SOCKET_ROOT": str(self.pg.socket_root),
                "IAP_JWKS_URL": self.keys.jwks_url,
                "STORAGE_EMULATOR_HOST": self.front.url,
                "IAM_CREDENTIALS_ENDPOINT": self.fakes.url,
                **self.fakes.metadata_env(),
            }
        )
        env.update(self.extra_env)
        return env

    def migrate(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deployer.server", "migrate"],
            env=self.server_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def start_server(self) -> Proc:
        log = self.root / f"server-{len(list(self.root.glob('server-*.log')))}.log"
        self.server = start(
            [sys.executable, "-m", "deployer.server", "serve"], self.server_env(), log
        )
        wait_healthy(f"http://127.0.0.1:{self.port}", self.server)
        return self.server

    def stop(self) -> None:
        for closer in (
            lambda: self.server and self.server.stop(),
            lambda: self.proxy and self.proxy.close(),
            lambda: self.keys and self.keys.close(),
            lambda: self.front and self.front.close(),
            lambda: self.gcs and self.gcs.stop(),
            lambda: self.fakes and self.fakes.close(),
            lambda: self.pg and self.pg.destroy(),
        ):
            with contextlib.suppress(Exception):  # best effort: keep closing the rest
                closer()

    # ----- clients -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self, user: str = "alice@example.com") -> dict[str, str]:
        """A researcher's shell: their ADC, the plugin on, the URL of the service."""
        assert self.fakes is not None
        adc = self.fakes.user_adc_file(user, self.root / f"adc-{user}-{os.getpid()}.json")
        return self.fakes.client_env(
            self.root,
            MLFLOW_TRACKING_URI=self.url,
            MLFLOW_TRACKING_AUTH="deployer-iap",
            MLFLOW_IAP_SERVICE_ACCOUNT=CLIENT_SA,
            GOOGLE_APPLICATION_CREDENTIALS=str(adc),
            MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=str(16 * 1024 * 1024),
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="7",
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
        )

    # ----- what the stores hold -------------------------------------------------------------
    def db_count(self, sql: str, *params: object) -> int:
        assert self.pg is not None
        conn = psycopg2.connect(
            host=str(self.pg.socket_dir), user="mlflow", password=DB_PASSWORD, dbname="mlflow"
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    def snapshot(self) -> dict[str, int]:
        """Rows and objects: what an attack must not change."""
        assert self.gcs is not None
        counts = {
            t: self.db_count(f"select count(*) from {t}")  # fixed table names
            for t in (
                "experiments",
                "runs",
                "metrics",
                "params",
                "tags",
                "registered_models",
                "model_versions",
            )
        }
        counts["objects"] = len(self.gcs.objects(BUCKET))
        return counts
