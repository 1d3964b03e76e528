"""`make one-click-mlflow` as an owner runs it, against the twin project, then what a team does.

The steps share one twin and run in order (each depends on the one before): a first deploy,
status, the examples through IAP with the plugin, a no-change redeploy, an upgrade, a second
environment, a keep-data destroy and redeploy, and a destroy that deletes everything.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from tests.twin import state as st
from tests.twin.harness import REPO, Twin

pytestmark = pytest.mark.e2e

OWNER = "owner@twin.example.com"


def vars_file(path: Path, environment: str, service_name: str = "mlflow") -> Path:
    path.write_text(
        f'environment = "{environment}"\n'
        'project_id = "acme-twin"\n'
        'region = "us-central1"\n'
        'state_bucket = "acme-twin-mlflow-tfstate"\n'
        f'web_app_users = ["user:{OWNER}", "user:alice@twin.example.com"]\n'
        f'service_name = "{service_name}"\n'
        'db_tier = "db-f1-micro"\n'
    )
    return path


class Owner:
    """The owner's shell on the twin: make and the deployer, from the repository."""

    def __init__(self, twin: Twin, home: Path) -> None:
        self.twin = twin
        self.home = home
        self.env = twin.env()

    def run(self, *argv: str, stdin: str | None = None, timeout: int = 1200) -> subprocess.CompletedProcess:
        done = subprocess.run(
            list(argv),
            cwd=REPO,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        (self.home / "last.log").write_text(done.stdout + done.stderr)
        return done

    def make(self, target: str, vars_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.run("make", target, f"VARS={vars_path}", stdin=stdin)

    def deployer(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.run(str(REPO / ".venv" / "bin" / "deployer"), *args, stdin=stdin)

    def outputs(self, environment: str) -> dict:
        return json.loads((REPO / ".deployer" / environment / "outputs.json").read_text())

    def token(self, vars_path: Path) -> str:
        done = self.deployer("token", "--vars", str(vars_path))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def get(self, url: str, token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(
            url,
            headers=headers,
            proxies={"https": self.twin.front.url},
            verify=str(self.twin.front.ca.bundle),
            timeout=30,
        )


def _ok(done: subprocess.CompletedProcess) -> str:
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    return text


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    t = Twin(tmp_path_factory.mktemp("twin")).start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def owner(twin, tmp_path_factory):
    return Owner(twin, tmp_path_factory.mktemp("owner"))


@pytest.fixture(scope="module")
def dev(owner) -> Path:
    return vars_file(owner.home / "vars.dev", "dev")


def test_one_click_deploys_and_answers_through_iap(owner, dev):
    text = _ok(owner.make("one-click-mlflow", dev))
    url = owner.outputs("dev")["service_url"]
    assert url in text
    assert owner.get(f"{url}/health", owner.token(dev)).status_code == 200
    assert owner.get(f"{url}/health", None).status_code == 401


def test_status_reports_the_ready_revision(owner, dev):
    text = _ok(owner.deployer("status", "--vars", str(dev)))
    assert "health       ok" in text
    assert "ready: True" in text


def test_examples_log_and_load_through_iap_with_the_plugin(owner, dev):
    outputs = owner.outputs("dev")
    env = {
        "MLFLOW_TRACKING_URI": outputs["service_url"],
        "MLFLOW_TRACKING_AUTH": "deployer-iap",
        "MLFLOW_IAP_SERVICE_ACCOUNT": outputs["client_service_account"],
    }
    owner.env.update(env)
    python = str(REPO / ".venv" / "bin" / "python")
    _ok(owner.run(python, "examples/track_experiment.py"))
    _ok(owner.run(python, "examples/load_model.py"))


def test_second_deploy_changes_nothing(owner, dev, twin):
    before = owner.outputs("dev")["service_url"]
    images = list(twin.doc()["images"])
    text = _ok(owner.make("deploy", dev))
    assert "no changes" in text
    assert owner.outputs("dev")["service_url"] == before
    assert twin.doc()["images"] == images
