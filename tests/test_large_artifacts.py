"""Artifacts far over Cloud Run's 32 MiB body limit, through the server's multipart path.

The server signs one GCS URL per part through IAM signBlob (as Cloud Run's metadata-server
credentials cannot sign), the client PUTs the parts straight to GCS, and downloads come back as
signed, ranged GETs. Every signed URL is verified against the service account's real key.
"""

from __future__ import annotations

import hashlib
import os

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.support.cloud_server import BUCKET, migrate_and_serve, running_stack
from tests.support.gcs_front import GcsFront
from tests.support.google_fakes import GoogleFakes
from tests.support.iap_keys import iap_headers
from tests.support.processes import free_port, wait_healthy

RUNTIME_SA = "mlflow-server@test-project.iam.gserviceaccount.com"
SIZE = 100 * 1024 * 1024 + 12345  # not a multiple of the part size


@pytest.fixture(scope="module")
def signing_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    fakes = GoogleFakes()
    fakes.service_account(RUNTIME_SA)
    fakes.metadata_account = RUNTIME_SA  # Cloud Run's metadata server speaks for the runtime SA
    fakes.allow_token_creator(RUNTIME_SA, RUNTIME_SA)  # Terraform: token creator on itself
    with running_stack(root) as (cloud, keys):
        front = GcsFront(
            cloud.gcs.url,
            lambda email: (
                fakes.accounts[email].key.public_key() if email in fakes.accounts else None
            ),
        )
        port = free_port()
        env = cloud.env(
            port,
            STORAGE_EMULATOR_HOST=front.url,
            SIGNING_SERVICE_ACCOUNT=RUNTIME_SA,
            IAM_CREDENTIALS_ENDPOINT=fakes.url,
            GOOGLE_CLOUD_PROJECT="test-project",
            **fakes.metadata_env(),
        )
        proc = migrate_and_serve(env, root / "serve.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc)
            yield url, cloud, keys, fakes, front, proc
        finally:
            proc.stop()
            front.close()
            fakes.close()


def test_100_mib_artifact_round_trips_without_passing_through_the_server(
    signing_server, tmp_path, monkeypatch
):
    url, cloud, keys, fakes, front, proc = signing_server
    # Above Cloud Run's body limit, so the client must take the multipart path.
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(16 * 1024 * 1024))
    payload = os.urandom(SIZE)
    src = tmp_path / "big.bin"
    src.write_bytes(payload)
    with iap_headers(keys):
        mlflow.set_tracking_uri(url)
        try:
            client = MlflowClient(url)
            run = client.create_run(client.create_experiment("large"))
            client.log_artifact(run.info.run_id, str(src), "ckpt")
            back = client.download_artifacts(run.info.run_id, "ckpt/big.bin", str(tmp_path / "dl"))
        finally:
            mlflow.set_tracking_uri(None)

    with open(back, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest()
    name = f"artifacts/1/{run.info.run_id}/artifacts/ckpt/big.bin"
    assert cloud.gcs.objects(BUCKET, "artifacts/")[name] == SIZE

    puts = [p for m, p in front.signed_requests if m == "PUT"]
    gets = [p for m, p in front.signed_requests if m == "GET"]
    assert len(puts) == 11  # 10 MiB parts
    assert len(gets) >= 2  # ranged downloads straight from the bucket
    assert fakes.counters.sign_blob >= len(puts) + 1
    assert front.rejected == []
    # The bytes never went through the server: no proxied PUT or GET of the file body.
    log = proc.output()
    assert "mpu/create" in log and "mpu/complete" in log
    assert "PUT /api/2.0/mlflow-artifacts/artifacts" not in log
    assert "GET /api/2.0/mlflow-artifacts/artifacts/1/" not in log


def test_tampered_or_foreign_signatures_are_refused(signing_server):
    url, cloud, keys, _, front, _ = signing_server
    r = requests.get(
        f"{url}/api/2.0/mlflow-artifacts/presigned/1/x/artifacts/none.bin",
        headers={"x-goog-iap-jwt-assertion": keys.assertion()},
        timeout=30,
    )
    assert r.status_code in (400, 404), r.text  # no such artifact: no URL is signed for it
    # Sign a URL for a real object, then tamper with it.
    cloud.gcs.create_bucket(BUCKET)
    requests.post(
        f"{cloud.gcs.url}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": "artifacts/1/r/artifacts/x.txt"},
        data=b"hello",
        timeout=10,
    ).raise_for_status()
    r = requests.get(
        f"{url}/api/2.0/mlflow-artifacts/presigned/1/r/artifacts/x.txt",
        headers={"x-goog-iap-jwt-assertion": keys.assertion()},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    signed = r.json()["url"]
    assert requests.get(signed, timeout=10).content == b"hello"
    tampered = signed.replace("x.txt", "y.txt")
    assert requests.get(tampered, timeout=10).status_code == 403
    assert "signature does not match" in front.rejected


def test_a_client_cannot_ask_for_a_signed_url_that_lives_for_days(signing_server):
    """MLflow lets the client ask for up to 7 days; a signed URL is a bearer credential."""
    url, cloud, keys, _, _, _ = signing_server
    headers = {"x-goog-iap-jwt-assertion": keys.assertion()}
    api = f"{url}/api/2.0/mlflow"
    # A run whose artifacts live directly in the bucket (allowed: under the deployment's root).
    exp = requests.post(
        f"{api}/experiments/create",
        json={"name": f"direct-{os.getpid()}", "artifact_location": f"gs://{BUCKET}/artifacts/d"},
        headers=headers,
        timeout=30,
    )
    assert exp.status_code == 200, exp.text
    run = requests.post(
        f"{api}/runs/create",
        json={"experiment_id": exp.json()["experiment_id"]},
        headers=headers,
        timeout=30,
    ).json()["run"]["info"]
    name = run["artifact_uri"].removeprefix(f"gs://{BUCKET}/") + "/model.bin"
    requests.post(
        f"{cloud.gcs.url}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": name},
        data=b"weights",
        timeout=10,
    ).raise_for_status()
    r = requests.post(
        f"{api}/artifacts/presigned-download-url",
        json={"run_id": run["run_id"], "path": "model.bin", "expiration": 604800},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    signed = r.json()["presigned_url"]
    expires = int(
        dict(p.split("=", 1) for p in signed.split("?", 1)[1].split("&"))["X-Goog-Expires"]
    )
    assert expires <= 900
    assert requests.get(signed, timeout=10).content == b"weights"
