"""`make one-click-mlflow` as an owner runs it, against the twin project, then what a team does.

The steps share one twin and run in order (each depends on the one before): a first deploy,
status, the examples through IAP with the plugin, a no-change redeploy, an upgrade, a second
environment, a keep-data destroy and redeploy, and a destroy that deletes everything.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from deployer import image_build, user_login
from tests.support.sign_in import sign_in_from_the_command_line
from tests.twin import podman
from tests.twin import state as st
from tests.twin.cloudsql import TwinPostgres
from tests.twin.harness import REPO, Twin

pytestmark = pytest.mark.e2e

OWNER = "owner@twin.example.com"
PEOPLE = ("alice@twin.example.com", "bob@twin.example.com")
# The Desktop app OAuth client the owner made once in the console; dev allowlists it for
# programmatic access, staging does not.
DESKTOP_CLIENT = "1234-abcd.apps.googleusercontent.com"


def vars_file(
    path: Path, environment: str, service_name: str = "mlflow", clients: tuple[str, ...] = ()
) -> Path:
    users = ", ".join(f'"user:{u}"' for u in (OWNER, *PEOPLE))
    path.write_text(
        f'environment = "{environment}"\n'
        'project_id = "acme-twin"\n'
        'region = "us-central1"\n'
        'state_bucket = "acme-twin-mlflow-tfstate"\n'
        f"web_app_users = [{users}]\n"
        f"iap_programmatic_clients = {json.dumps(list(clients))}\n"
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

    def run(
        self, *argv: str, stdin: str | None = None, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            list(argv),
            cwd=REPO,
            env={**self.env, **(extra or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        (self.home / "last.log").write_text(done.stdout + done.stderr)
        return done

    def make(
        self, target: str, vars_path: Path, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        return self.run("make", target, f"VARS={vars_path}", stdin=stdin)

    def deployer(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.run(str(REPO / ".venv" / "bin" / "deployer"), *args, stdin=stdin)

    def deployer_from(self, checkout: Path, *args: str) -> subprocess.CompletedProcess:
        """The deployer of another checkout (a newer one, say), as its owner would run it."""
        python_path = self.env["PYTHONPATH"].replace(str(REPO), str(checkout))
        return self.run(
            str(REPO / ".venv" / "bin" / "deployer"), *args, extra={"PYTHONPATH": python_path}
        )

    def outputs(self, environment: str) -> dict:
        return json.loads((REPO / ".deployer" / environment / "outputs.json").read_text())

    def token(self, environment: str) -> str:
        done = self.deployer("token", "--env", environment)
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
    return vars_file(owner.home / "vars.dev", "dev", clients=(DESKTOP_CLIENT,))


def _plugin_env(owner: Owner, environment: str) -> dict[str, str]:
    outputs = owner.outputs(environment)
    return {
        "MLFLOW_TRACKING_URI": outputs["service_url"],
        "MLFLOW_TRACKING_AUTH": "deployer-iap",
        "MLFLOW_IAP_SERVICE_ACCOUNT": outputs["client_service_account"],
    }


def test_one_click_deploys_and_answers_through_iap(owner, dev):
    text = _ok(owner.make("one-click-mlflow", dev))
    url = owner.outputs("dev")["service_url"]
    assert url in text
    assert owner.get(f"{url}/health", owner.token("dev")).status_code == 200
    assert owner.get(f"{url}/health", None).status_code == 401


def test_status_reports_the_ready_revision(owner, dev):
    text = _ok(owner.deployer("status", "--vars", str(dev)))
    assert "health       ok" in text
    assert "ready: True" in text


def test_examples_log_and_load_through_iap_with_the_plugin(owner, dev):
    env = _plugin_env(owner, "dev")
    python = str(REPO / ".venv" / "bin" / "python")
    _ok(owner.run(python, "examples/track_experiment.py", extra=env))
    _ok(owner.run(python, "examples/load_model.py", extra=env))


LOG_A_RUN = """
import mlflow
mlflow.set_experiment("people")
with mlflow.start_run() as run:
    mlflow.log_param("who", "me")
print("run_id=" + run.info.run_id)
"""


def _exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))


def signed_in(owner: Owner, twin, person: str, environment: str) -> dict[str, str]:
    """A researcher's shell: `deployer env`'s exports, then `deployer login` once as `person`."""
    done = owner.deployer("env", "--env", environment)
    assert done.returncode == 0, done.stderr
    env = {
        **_exports(done.stdout),
        user_login.ENV_CONFIG_DIR: str(owner.home / "config" / person),
        user_login.ENV_CLIENT_SECRET: twin.google.oauth_client(DESKTOP_CLIENT),
    }
    deployer = str(REPO / ".venv" / "bin" / "deployer")
    out = sign_in_from_the_command_line(twin.google, deployer, {**owner.env, **env}, person)
    assert f"signed in as {person}" in out
    return env


def author_of(owner: Owner, environment: str, run_id: str) -> tuple[str, str]:
    url = owner.outputs(environment)["service_url"]
    r = owner.get(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}", owner.token(environment))
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    return run["info"]["user_id"], tags["mlflow.user"]


def test_two_people_logging_from_code_each_see_their_own_email(owner, dev, twin):
    """Each person signs in once with `deployer login`; the plugin then sends their own Google
    ID token (aud = the allowlisted desktop client) and IAP passes them through as themselves."""
    assert _exports(_ok(owner.deployer("env", "--env", "dev")))[user_login.ENV_CLIENT_ID] == (
        DESKTOP_CLIENT
    )
    python = str(REPO / ".venv" / "bin" / "python")
    authors = {}
    for person in PEOPLE:
        done = owner.run(python, "-c", LOG_A_RUN, extra=signed_in(owner, twin, person, "dev"))
        assert done.returncode == 0, done.stderr[-4000:]
        run_id = re.search(r"run_id=(\w+)", done.stdout).group(1)
        authors[person] = author_of(owner, "dev", run_id)
    assert authors == {p: (p, p) for p in PEOPLE}


def test_an_idle_database_sleeps_and_the_next_run_wakes_it(owner, dev, twin):
    outputs = owner.outputs("dev")
    runs = runs_in(owner, "dev")
    doc = twin.doc()
    service = next(
        s
        for s in st.resources(doc, "google_cloud_run_v2_service").values()
        if s["name"] == outputs["service_name"]
    )
    env = {e["name"]: e.get("value") for e in service["template"][0]["containers"][0]["env"]}
    bucket, _, name = env["LAST_REQUEST_OBJECT"].removeprefix("gs://").partition("/")
    # Nobody has used it for two hours: the recorded last request is that old.
    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    r = requests.post(
        f"{twin.gcs.url}/upload/storage/v1/b/{bucket}/o",
        params={"uploadType": "media", "name": name},
        data=stamp,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    job = outputs["sleeper_job_name"]
    _ok(owner.run("gcloud", "run", "jobs", "execute", job, "--region", "us-central1", "--wait"))
    instance = outputs["cloud_sql_connection_name"].rsplit(":", 1)[-1]
    assert twin.doc()["sql_activation"][instance] == "NEVER"
    assert not TwinPostgres(twin.state.root, "-", instance).running
    assert "asleep" in _ok(owner.deployer("status", "--vars", str(dev)))
    python = str(REPO / ".venv" / "bin" / "python")
    # As a researcher runs it: MLflow's own retries (7, honouring Retry-After), not the
    # suite's shortened ones, carry the script over the wake.
    wake_env = {**_plugin_env(owner, "dev"), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7"}
    _ok(owner.run(python, "examples/track_experiment.py", extra=wake_env))
    assert twin.doc()["sql_activation"][instance] == "ALWAYS"
    assert runs_in(owner, "dev") == runs + 1


def test_second_deploy_changes_nothing(owner, dev, twin):
    before = owner.outputs("dev")["service_url"]
    images = list(twin.doc()["images"])
    text = _ok(owner.make("deploy", dev))
    assert "no changes" in text
    assert owner.outputs("dev")["service_url"] == before
    assert twin.doc()["images"] == images


def runs_in(owner: Owner, environment: str, experiment: str = "iris-demo") -> int:
    """How many runs the deployed server holds in an experiment, asked through IAP."""
    url = owner.outputs(environment)["service_url"]
    token = owner.token(environment)
    r = owner.get(
        f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}", token
    )
    assert r.status_code == 200, r.text
    experiment_id = r.json()["experiment"]["experiment_id"]
    r = requests.post(
        f"{url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "max_results": 100},
        headers={"Authorization": f"Bearer {token}"},
        proxies={"https": owner.twin.front.url},
        verify=str(owner.twin.front.ca.bundle),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return len(r.json().get("runs", []))


def changed_checkout(tmp: Path) -> Path:
    """This repository with one server file changed: a new image, as an MLflow upgrade is."""
    copy = tmp / "checkout"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv*", ".deployer", ".git", "__pycache__", ".pytest_cache"
        ),
    )
    init = copy / "deployer" / "server" / "__init__.py"
    init.write_text(init.read_text() + "\n# upgraded\n")
    return copy


def test_an_upgrade_migrates_before_the_new_revision_serves(owner, dev, twin, tmp_path):
    before = owner.outputs("dev")
    runs = runs_in(owner, "dev")
    # The database sleeps when the upgrade starts: the deploy wakes it, then migrates.
    instance = before["cloud_sql_connection_name"].rsplit(":", 1)[-1]
    _ok(owner.run("gcloud", "sql", "instances", "patch", instance, "--activation-policy=NEVER"))
    assert not TwinPostgres(twin.state.root, "-", instance).running
    copy = changed_checkout(tmp_path)
    _ok(owner.deployer_from(copy, "deploy", "--vars", str(dev)))
    doc = twin.doc()
    service = next(
        s
        for s in st.resources(doc, "google_cloud_run_v2_service").values()
        if s["name"] == before["service_name"]
    )
    image = service["template"][0]["containers"][0]["image"]
    assert image.endswith(image_build.content_tag(copy))
    migrations = [
        e for e in doc["executions"] if e["job"].endswith("/jobs/" + before["migration_job_name"])
    ]
    revisions = [r for r in doc["revisions"] if r["service"] == service["id"]]
    assert len(migrations) == 2 and migrations[-1]["exit_code"] == 0
    assert revisions[-1]["image"] == image and migrations[-1]["at"] < revisions[-1]["ready_at"]
    assert owner.outputs("dev")["service_url"] == before["service_url"]
    assert runs_in(owner, "dev") == runs


def test_a_second_environment_stands_beside_the_first(owner, dev, twin):
    staging = vars_file(owner.home / "vars.staging", "staging")
    _ok(owner.make("deploy", staging))
    dev_url = owner.outputs("dev")["service_url"]
    staging_url = owner.outputs("staging")["service_url"]
    assert staging_url != dev_url
    for url, env in ((staging_url, "staging"), (dev_url, "dev")):
        r = owner.get(f"{url}/health", owner.token(env))
        assert r.status_code == 200, r.text


def test_without_the_allowlist_iap_refuses_a_persons_own_token(owner):
    """Staging allowlists no desktop client: the same person's own ID token that dev admits
    is refused there, and the shared client account still gets in."""
    login = {user_login.ENV_CONFIG_DIR: str(owner.home / "config" / PEOPLE[0])}
    tokens = {}
    for environment in ("dev", "staging"):
        done = owner.run(
            str(REPO / ".venv" / "bin" / "deployer"), "token", "--env", environment, extra=login
        )
        assert done.returncode == 0 and f"token for {PEOPLE[0]}" in done.stderr, done.stderr
        tokens[environment] = done.stdout.strip()
    for environment, status in (("dev", 200), ("staging", 401)):
        url = owner.outputs(environment)["service_url"]
        assert owner.get(f"{url}/health", tokens[environment]).status_code == status
    staging_url = owner.outputs("staging")["service_url"]
    assert owner.get(f"{staging_url}/health", owner.token("staging")).status_code == 200


def test_destroy_keeps_the_data_and_a_new_deploy_finds_the_old_runs(owner, dev, twin):
    runs = runs_in(owner, "dev")
    outputs = owner.outputs("dev")
    _ok(owner.make("destroy", dev, stdin="acme-twin\n"))
    doc = twin.doc()
    assert not [
        s
        for s in st.resources(doc, "google_cloud_run_v2_service").values()
        if s["name"] == outputs["service_name"]
    ]
    assert owner.get(f"{outputs['service_url']}/health", None).status_code == 404
    assert any(
        i["connection_name"] == outputs["cloud_sql_connection_name"]
        for i in st.resources(doc, "google_sql_database_instance").values()
    )
    assert twin.gcs.objects(outputs["artifacts_bucket"])
    _ok(owner.make("deploy", dev))
    assert runs_in(owner, "dev") == runs > 0


def test_destroy_delete_data_leaves_nothing(owner, dev, twin, tmp_path):
    """Staging is destroyed from a newer checkout than deployed it (its image never built):
    lifting the protection must not roll the service out to that image first."""
    staging = owner.home / "vars.staging"
    newer = changed_checkout(tmp_path)
    for vars_path, env, checkout in ((dev, "dev", REPO), (staging, "staging", newer)):
        outputs = owner.outputs(env)
        args = ("destroy", "--vars", str(vars_path), "--delete-data", "--yes")
        _ok(owner.deployer_from(checkout, *args))
        assert outputs["artifacts_bucket"] not in [b["name"] for b in twin.gcs.buckets()]
    assert_nothing_left(twin)


def test_the_same_environment_deploys_again_after_deleting_everything(owner, dev, twin):
    """Soft-deleted names (the SQL instance, the WIF pool) and the removed peering do not stand
    in the way of a fresh deploy of the same environment."""
    _ok(owner.make("deploy", dev))
    url = owner.outputs("dev")["service_url"]
    assert owner.get(f"{url}/health", owner.token("dev")).status_code == 200
    _ok(owner.deployer("destroy", "--vars", str(dev), "--delete-data", "--yes"))
    assert_nothing_left(twin)


def assert_nothing_left(twin: Twin) -> None:
    doc = twin.doc()
    left = {kind: list(items) for kind, items in doc["resources"].items() if items}
    assert left == {}, left
    assert doc["routes"] == {}
    names = podman.podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in names if n.startswith(f"{twin.state.root.name}-")]
