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
      env {{
        name  = "ARTIFACTS_DESTINATION"
        value = "/tmp/artifacts"
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
def server_image() -> str:
    server = podman.server_image()
    podman.tag(server, IMAGE)
    return IMAGE


@pytest.fixture
def twin(tmp_path, server_image):
    """A fresh twin project for each case: names do not collide between cases."""
    t = Twin(tmp_path / "twin").start()
    subprocess.run(
        [
            "gcloud",
            "storage",
            "buckets",
            "create",
            "gs://acme-twin-state",
            "--project",
            "acme-twin",
        ],
        env=t.env(),
        check=True,
        capture_output=True,
    )
    yield t
    t.stop()


def apply(
    twin: Twin, folder: Path, body: str, apis: tuple[str, ...] = APIS
) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    names = ", ".join(f'"{a}.googleapis.com"' for a in apis)
    (folder / "main.tf").write_text(PRELUDE.format(apis=names) + textwrap.dedent(body))
    env = twin.env(TF_DATA_DIR=str(folder / ".terraform"))
    init = subprocess.run(
        [
            "terraform",
            f"-chdir={folder}",
            "init",
            "-no-color",
            "-input=false",
            "-backend-config=bucket=acme-twin-state",
            f"-backend-config=prefix={folder.name}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return subprocess.run(
        ["terraform", f"-chdir={folder}", "apply", "-no-color", "-input=false", "-auto-approve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def terraform_destroy(twin: Twin, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["terraform", f"-chdir={folder}", "destroy", "-no-color", "-auto-approve"],
        env=twin.env(TF_DATA_DIR=str(folder / ".terraform")),
        capture_output=True,
        text=True,
        timeout=600,
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


SECRET = """
resource "google_secret_manager_secret" "s" {
  secret_id = "x"
  replication {
    auto {}
  }
}
"""


def test_an_api_that_is_not_enabled_fails_the_apply(twin, tmp_path):
    done = apply(
        twin,
        tmp_path / "api",
        SECRET,
        apis=("iam", "artifactregistry"),
    )
    failed_with(done, "Secret Manager API has not been used in project", "SERVICE_DISABLED")


def test_an_image_never_pushed_fails_the_revision(twin, tmp_path):
    done = apply(
        twin, tmp_path / "image", service(image=IMAGE.replace("twin-test", "never-pushed"))
    )
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


# A container that answers 200 everywhere: the case is about destroying, not about MLflow.
ANSWERS = (
    'command = ["python3", "-c", "import http.server as h, os; '
    "h.HTTPServer(('', int(os.environ['PORT'])), type('H', (h.BaseHTTPRequestHandler,), "
    "{'do_GET': lambda s: (s.send_response(200), s.end_headers())})).serve_forever()\"]"
)


def test_a_healthy_service_then_a_destroy_that_meets_deletion_protection(twin, tmp_path):
    pushed(twin)
    folder = tmp_path / "protected"
    done = apply(twin, folder, service(protect=True, args=ANSWERS))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    destroy = terraform_destroy(twin, folder)
    failed_with(destroy, "cannot destroy service without setting deletion_protection=false")


def test_binding_a_service_agent_that_was_never_created_fails(twin, tmp_path):
    number = twin.doc()["project"]["number"]
    body = f"""
resource "google_project_iam_member" "iap_invoker" {{
  project    = "acme-twin"
  role       = "roles/run.invoker"
  member     = "serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com"
  depends_on = [google_project_service.on]
}}
"""
    done = apply(twin, tmp_path / "agent", body, apis=(*APIS, "cloudresourcemanager"))
    failed_with(done, f"service-{number}@gcp-sa-iap.iam.gserviceaccount.com does not exist")


DATABASE = """
resource "google_sql_database_instance" "db" {
  name                = "owned-db"
  database_version    = "POSTGRES_16"
  deletion_protection = false
  settings {
    tier = "db-f1-micro"
  }
  depends_on = [google_project_service.on]
}
resource "google_sql_database" "mlflow" {
  instance = google_sql_database_instance.db.name
  name     = "mlflow"
}
resource "google_sql_user" "mlflow" {
  instance = google_sql_database_instance.db.name
  name     = "mlflow"
  password = "a-Password-123"
  # Created after the database and destroyed before it, so the destroy meets the role while
  # its tables still exist: with no order the two go in parallel, and a database dropped first
  # takes the tables (and the role's objects) with it.
  depends_on = [google_sql_database.mlflow]
}
"""


def test_a_database_user_that_owns_tables_cannot_be_dropped(twin, tmp_path):
    import psycopg2

    folder = tmp_path / "owner"
    done = apply(twin, folder, DATABASE)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    socket_dir = twin.state.root / "cloudsql" / "acme-twin:us-central1:owned-db"
    conn = psycopg2.connect(
        host=str(socket_dir), user="mlflow", password="a-Password-123", dbname="mlflow"
    )
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE runs (id int)")
    conn.close()
    destroy = terraform_destroy(twin, folder)
    failed_with(destroy, 'role "mlflow" cannot be dropped because some objects depend on it')


def test_a_runtime_account_without_cloudsql_client_cannot_reach_the_database(twin, tmp_path):
    pushed(twin)
    volume = """
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
      env {
        name  = "DB_ENGINE"
        value = "postgresql"
      }
      env {
        name  = "DB_USER"
        value = "mlflow"
      }
      env {
        name  = "DB_PASSWORD"
        value = "a-Password-123"
      }
      env {
        name  = "DB_NAME"
        value = "mlflow"
      }
      env {
        name  = "CLOUD_SQL_CONNECTION_NAME"
        value = google_sql_database_instance.db.connection_name
      }"""
    body = DATABASE.replace("owned-db", "noclient-db") + service(extra=volume).replace(
        "BACKEND_STORE_URI", "UNUSED"
    ).replace(
        "    containers {",
        '    volumes {\n      name = "cloudsql"\n      cloud_sql_instance {\n'
        "        instances = [google_sql_database_instance.db.connection_name]\n      }\n    }\n"
        "    containers {",
    )
    done = apply(twin, tmp_path / "noclient", body)
    failed_with(done, "failed to start and listen on the port", "notAuthorized")


def test_a_bucket_with_objects_and_no_force_destroy_stays(twin, tmp_path):
    folder = tmp_path / "bucket"
    body = """
resource "google_storage_bucket" "b" {
  name          = "acme-twin-kept"
  location      = "us-central1"
  force_destroy = false
  depends_on    = [google_project_service.on]
}
"""
    done = apply(twin, folder, body, apis=(*APIS, "storage"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    twin.gcs.create_object("acme-twin-kept", "artifacts/1/model.pkl", b"weights")
    failed_with(
        terraform_destroy(twin, folder),
        "Error trying to delete bucket acme-twin-kept containing objects without `force_destroy`",
    )
    assert twin.gcs.read("acme-twin-kept", "artifacts/1/model.pkl") == b"weights"
