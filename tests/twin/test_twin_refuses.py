"""The twin must fail a deploy, naming the cause, wherever Google would: a twin that cannot fail
proves nothing. Each case applies a small configuration with the real Terraform."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.twin import podman
from tests.twin.harness import Twin

pytestmark = pytest.mark.e2e

IMAGE = "us-central1-docker.pkg.dev/acme-twin/mlflow/mlflow-server:twin-test"
APIS = ("run", "secretmanager", "artifactregistry", "iam", "sqladmin")

PRELUDE = """
terraform {{
  backend "gcs" {{}}
}}
provider "google" {{
  project = "acme-twin"
  region  = "us-central1"
}}
resource "google_project_service" "on" {{
  for_each           = toset([{apis}])
  service            = each.value
  disable_on_destroy = false
}}
resource "google_artifact_registry_repository" "images" {{
  location      = "us-central1"
  repository_id = "mlflow"
  format        = "DOCKER"
  depends_on    = [google_project_service.on]
}}
resource "google_service_account" "runtime" {{
  account_id = "mlflow-server"
  depends_on = [google_project_service.on]
}}
"""


def service(image: str = IMAGE, args: str = "", extra: str = "", protect: bool = False) -> str:
    return f"""
resource "google_cloud_run_v2_service" "svc" {{
  name                = "mlflow"
  location            = "us-central1"
  deletion_protection = {str(protect).lower()}
  template {{
    service_account = google_service_account.runtime.email
    containers {{
      image = "{image}"
      {args}
      env {{
        name  = "AUTH_MODE"
        value = "none"
      }}
      env {{
        name  = "BACKEND_STORE_URI"
        value = "sqlite:////tmp/mlflow.db"
      }}
      {extra}
      startup_probe {{
        period_seconds    = 2
        failure_threshold = 30
        http_get {{
          path = "/health"
        }}
      }}
    }}
  }}
  depends_on = [google_artifact_registry_repository.images]
}}
"""


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    t = Twin(tmp_path_factory.mktemp("refuse")).start()
    server = podman.server_image()
    podman.tag(server, IMAGE)
    subprocess.run(
        ["gcloud", "storage", "buckets", "create", "gs://acme-twin-state", "--project", "acme-twin"],
        env=t.env(),
        check=True,
        capture_output=True,
    )
    yield t
    t.stop()


def apply(twin: Twin, folder: Path, body: str, apis: tuple[str, ...] = APIS) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    names = ", ".join(f'"{a}.googleapis.com"' for a in apis)
    (folder / "main.tf").write_text(PRELUDE.format(apis=names) + textwrap.dedent(body))
    env = twin.env(TF_DATA_DIR=str(folder / ".terraform"))
    init = subprocess.run(
        ["terraform", f"-chdir={folder}", "init", "-no-color", "-input=false",
         "-backend-config=bucket=acme-twin-state", f"-backend-config=prefix={folder.name}"],
        env=env, capture_output=True, text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return subprocess.run(
        ["terraform", f"-chdir={folder}", "apply", "-no-color", "-input=false", "-auto-approve"],
        env=env, capture_output=True, text=True, timeout=600,
    )


def pushed(twin: Twin) -> None:
    with twin.state.transaction() as doc:
        if IMAGE not in doc["images"]:
            doc["images"].append(IMAGE)


def failed_with(done: subprocess.CompletedProcess, *phrases: str) -> str:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{text[-3000:]}"
    return text


def test_an_api_that_is_not_enabled_fails_the_apply(twin, tmp_path):
    done = apply(twin, tmp_path / "api", 'resource "google_secret_manager_secret" "s" {\n  secret_id = "x"\n  replication {\n    auto {}\n  }\n}\n', apis=("iam", "artifactregistry"))
    failed_with(done, "Secret Manager API has not been used in project", "SERVICE_DISABLED")


def test_an_image_never_pushed_fails_the_revision(twin, tmp_path):
    done = apply(twin, tmp_path / "image", service(image=IMAGE.replace("twin-test", "never-pushed")))
    failed_with(done, "is not ready and cannot serve traffic", "never-pushed' not found")


def test_a_container_that_exits_at_start_fails_with_its_logs(twin, tmp_path):
    pushed(twin)
    done = apply(twin, tmp_path / "exits", service(args='args = ["no-such-mode"]'))
    failed_with(done, "failed to start and listen on the port", "Last log lines")


def test_a_secret_without_the_accessor_grant_fails_the_revision(twin, tmp_path):
    pushed(twin)
    secret = """
resource "google_secret_manager_secret" "pw" {
  secret_id = "pw"
  replication {
    auto {}
  }
  depends_on = [google_project_service.on]
}
resource "google_secret_manager_secret_version" "pw" {
  secret      = google_secret_manager_secret.pw.id
  secret_data = "hunter2-hunter2"
}
"""
    ref = """env {
        name = "DB_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.pw.secret_id
            version = "latest"
          }
        }
      }"""
    done = apply(twin, tmp_path / "secret", secret + service(extra=ref))
    failed_with(done, "Permission denied on secret", "roles/secretmanager.secretAccessor")


def test_a_healthy_service_then_a_destroy_that_meets_deletion_protection(twin, tmp_path):
    pushed(twin)
    folder = tmp_path / "protected"
    done = apply(twin, folder, service(protect=True))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    destroy = subprocess.run(
        ["terraform", f"-chdir={folder}", "destroy", "-no-color", "-auto-approve"],
        env=twin.env(TF_DATA_DIR=str(folder / ".terraform")),
        capture_output=True, text=True, timeout=600,
    )
    failed_with(destroy, "cannot destroy service without setting deletion_protection=false")
