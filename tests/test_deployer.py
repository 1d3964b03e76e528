"""The owner's deployer, against stand-in `gcloud` and `terraform` executables on PATH that
record their arguments and answer in the real tools' output formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import hcl2
import pytest

from deployer import cost, image_build
from deployer import vars as vars_file
from tests.conftest import REPO, console_script
from tests.support.google_fakes import GoogleFakes
from tests.support.http import LocalHttpServer, Response
from tests.support.vars_cases import CASES
from tests.terraform import tfcheck

FAKES = REPO / "tests" / "support" / "fake_cli"
PROJECT = "acme-ml"
CLIENT_SA = f"mlflow-log-pusher@{PROJECT}.iam.gserviceaccount.com"
GOOD_VARS = f"""
project_id = "{PROJECT}"
region = "europe-west1"
state_bucket = "acme-ml-tfstate"
web_app_users = ["user:alice@example.com", "domain:example.com"]
"""


class World:
    """A working folder with a vars file, fake tools on PATH and a health endpoint."""

    def __init__(self, root: Path, fakes: GoogleFakes, health: LocalHttpServer) -> None:
        self.root = root
        self.bin = root / "bin"
        self.cloud = root / "cloud"
        self.log = root / "calls.jsonl"
        for d in (self.bin, self.cloud):
            d.mkdir()
        for tool in ("gcloud", "terraform"):
            script = self.bin / tool
            script.write_text(
                f"#!{sys.executable}\nexec(open({str(FAKES / f'fake_{tool}.py')!r}).read())\n"
            )
            script.chmod(0o755)
        (root / "vars").write_text(GOOD_VARS)
        key = fakes.key_file(CLIENT_SA, root / "client-key.json")
        self.env = fakes.client_env(
            root,
            PATH=f"{self.bin}:{os.environ['PATH']}",
            FAKE_CLOUD_DIR=str(self.cloud),
            FAKE_CLI_LOG=str(self.log),
            FAKE_PROJECT=PROJECT,
            FAKE_SERVICE_URL=health.url,
            GOOGLE_APPLICATION_CREDENTIALS=str(key),
            # This checkout's deployer, whichever one the venv's console script was installed
            # from (the image tag is a hash of the checkout's files).
            PYTHONPATH=os.pathsep.join(
                [str(REPO / "tests" / "support" / "google_endpoints"), str(REPO)]
            ),
        )
        # The deployer under test is this tree's, not whichever one the console script's
        # virtual environment installed.
        self.env["PYTHONPATH"] = os.pathsep.join([self.env["PYTHONPATH"], str(REPO)])

    def deployer(
        self, *args: str, input_text: str | None = None, **env: str
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [console_script("deployer"), *args],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            input=input_text,
        )

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[str]:
        out = []
        for call in self.calls():
            argv = [a for a in call["argv"] if not a.startswith(("-chdir=", "--format"))]
            out.append(f"{call['tool']} {' '.join(argv[:4])}")
        return out

    def reset_log(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def fakes():
    f = GoogleFakes(PROJECT)
    yield f
    f.close()


@pytest.fixture(scope="module")
def health(fakes):
    """The deployed service's /health behind IAP: 200 only with a valid client-account token."""
    state = {"status": 200}

    def handle(req):
        if req.path != "/health":
            return Response(404, "")
        auth = req.headers.get("authorization", "")
        sa = fakes.accounts.get(CLIENT_SA)
        try:
            from deployer.server import jose

            jose.verify(
                auth.removeprefix("Bearer "),
                lambda kid: sa.key.public_key(),
                algorithms=["RS256"],
                audience=f"{server.url}/*",
                issuers=[CLIENT_SA],
            )
        except Exception:  # any bad token is IAP's 401
            return Response(401, "IAP: invalid token")
        return Response(state["status"], "OK")

    server = LocalHttpServer(handle)
    server.state = state  # type: ignore[attr-defined]
    yield server
    server.close()


@pytest.fixture
def world(tmp_path, fakes, health):
    health.state["status"] = 200
    return World(tmp_path, fakes, health)


# ----- the vars file ------------------------------------------------------------------------


def _tf_variables() -> dict[str, dict]:
    with (REPO / "terraform" / "variables.tf").open() as f:
        doc = hcl2.load(f)
    return {k.strip('"'): v for block in doc["variable"] for k, v in block.items()}


# Terraform variables the vars file does not carry: the image and the environment are the
# deployer's own; the rest are new in terraform/ and wait for their deployer/vars.py fields
# (Terraform's defaults apply meanwhile).
DEPLOYER_RENDERED = {"image", "environment"}
NOT_YET_IN_VARS = {
    "private_services_cidr",
    "reuse_private_services_access",
}


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def test_vars_keys_and_defaults_match_terraform_variables():
    tf = _tf_variables()
    ours = {f.name: f for f in vars_file.FIELDS if f.terraform}
    assert set(ours) == set(tf) - DEPLOYER_RENDERED - (NOT_YET_IN_VARS - set(ours))
    for name, f in ours.items():
        if "default" in tf[name]:
            assert _unquote(tf[name]["default"]) == f.default, name
        elif name != "region":  # the deployer suggests a region; Terraform requires one
            assert f.required, f"{name} is required in Terraform but has a deployer default"


def test_vars_example_is_valid_and_names_every_setting():
    text = (REPO / "vars.example").read_text()
    settings = vars_file.parse(text)
    assert settings.problems == []
    for f in vars_file.FIELDS:
        assert f"\n{f.name} = " in text and f.help in text


def test_validate_lists_every_problem_with_its_line(world):
    (world.root / "vars").write_text(
        'project_id = "Acme_ML"\n'
        'region = "mars-1"\n'
        'state_bucket = "acme-ml-tfstate"\n'
        'web_app_users = ["alice@example.com"]\n'
        'db_tier = "db-huge"\n'
        'vpc_egress = "vpn"\n'
        "max_instanses = 3\n"
    )
    result = world.deployer("validate", "--vars", "vars")
    assert result.returncode != 0
    for needle in (
        "vars:1: project_id",
        "vars:2: region",
        "vars:4: web_app_users",
        "vars:5: db_tier",
        "vars:6: vpc_egress",
        "vars:7: max_instanses: unknown setting (did you mean max_instances?)",
        "6 problem(s)",
    ):
        assert needle in result.stderr, result.stderr
    assert not (world.root / ".deployer").exists() and world.calls() == []


def test_connection_budget_is_checked_before_anything_runs(world):
    (world.root / "vars").write_text(GOOD_VARS + "max_instances = 3\n")
    result = world.deployer("validate", "--vars", "vars")
    assert result.returncode != 0 and "exceeds db-f1-micro's 25 connections" in result.stderr


def test_malformed_toml_names_the_line(world):
    (world.root / "vars").write_text('project_id = "acme-ml"\nregion = \n')
    result = world.deployer("validate")
    assert result.returncode != 0 and "vars:2: syntax: not valid TOML" in result.stderr


def test_init_writes_a_valid_file_non_interactively_and_interactively(world):
    result = world.deployer(
        "init",
        "--vars",
        "vars.staging",
        "--non-interactive",
        "--set",
        f"project_id={PROJECT}",
        "--set",
        "state_bucket=acme-state",
        "--set",
        "web_app_users=user:a@example.com,group:g@example.com",
    )
    assert result.returncode == 0, result.stderr
    staging = vars_file.load(world.root / "vars.staging")
    assert staging.problems == [] and staging.environment == "staging"
    assert staging["web_app_users"] == ["user:a@example.com", "group:g@example.com"]
    again = world.deployer("init", "--vars", "vars.staging", "--non-interactive")
    assert again.returncode != 0 and "exists" in again.stderr

    # Interactive: a bad answer is refused at once and asked again.
    answers = "\n".join(
        [
            "prod",
            "Bad_ID",
            PROJECT,
            "europe-west1",
            "acme-prod-state",
            "user:a@example.com",
            "direct",
            "postgresql",
            "db-g1-small",
            "0",
            "",
        ]
    )
    result = world.deployer("init", "--vars", "vars.prod", input_text=answers + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not a project ID" in result.stderr
    prod = vars_file.load(world.root / "vars.prod")
    assert prod.problems == [] and prod["vpc_egress"] == "direct"
    assert prod["db_tier"] == "db-g1-small"


def _case_text(changes: dict) -> str:
    base = vars_file.parse(GOOD_VARS).values | changes
    return "\n".join(f"{k} = {vars_file._toml_value(v)}" for k, v in base.items()) + "\n"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_shared_table_through_the_deployer(case):
    settings = vars_file.parse(_case_text(case.changes))
    blamed = {p.key for p in settings.problems}
    assert blamed == ({case.blamed} if case.blamed else set()), settings.problems


def _hcl(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_hcl(v)}" for k, v in value.items()) + " }"


def test_the_shared_table_through_terraform_variables(tmp_path):
    """The same table through terraform/variables.tf's own validation blocks, evaluated by the
    real Terraform (`terraform test`, mock providers): the same values accepted and refused."""
    copy = tfcheck._copy(REPO / "terraform", tmp_path / "terraform")
    for test_file in (copy / "tests").glob("*.tftest.hcl"):
        test_file.unlink()
    runs = []
    for i, case in enumerate(CASES):
        variables = "".join(f"    {k} = {_hcl(v)}\n" for k, v in case.changes.items())
        expect = f"  expect_failures = [var.{case.blamed}]\n" if case.blamed else ""
        runs.append(
            f'run "case_{i}_{case.name}" {{\n  command = plan\n  variables {{\n{variables}  }}\n'
            f"{expect}}}\n"
        )
    (copy / "tests" / "vars_table.tftest.hcl").write_text(
        'mock_provider "google" {\n  source = "./tests"\n}\n\nmock_provider "random" {}\n\n'
        'variables {\n  project_id = "acme-ml"\n  region = "europe-west1"\n'
        '  image = "europe-west1-docker.pkg.dev/acme-ml/mlflow/mlflow-server:3f2a9c1d"\n'
        '  web_app_users = ["user:alice@example.com"]\n}\n\n' + "\n".join(runs)
    )
    result = tfcheck.check_tests(copy, tfcheck.StandInProviders(tmp_path / "providers"))
    assert result.ok and result.passed == len(runs), result.detail


def test_init_without_required_settings_is_one_line_and_writes_nothing(world):
    result = world.deployer(
        "init", "--vars", "vars.new", "--non-interactive", "--set", "project_id=acme-ml-1234"
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "state_bucket, web_app_users are required" in lines[0]
    assert "--set state_bucket=" in lines[0] and "Traceback" not in result.stderr
    assert not (world.root / "vars.new").exists()


@pytest.mark.parametrize(
    ("pair", "needle"),
    [
        ("projectid=acme-ml", "projectid: unknown setting (did you mean project_id?)"),
        ("regoin=europe-west1", "regoin: unknown setting (did you mean region?)"),
        ("projectid", "use KEY=VALUE"),
    ],
)
def test_init_names_an_unknown_key_with_a_near_miss(world, pair, needle):
    result = world.deployer("init", "--vars", "vars.new", "--non-interactive", "--set", pair)
    assert result.returncode != 0 and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (world.root / "vars.new").exists()


def test_interactive_init_shows_a_bad_list_as_typed(world):
    answers = ["prod", PROJECT, "europe-west1", "acme-prod-state", "alice@example.com"]
    answers += ["user:alice@example.com", "direct", "postgresql", "db-f1-micro", "0", ""]
    result = world.deployer("init", "--vars", "vars.prod", input_text="\n".join(answers) + "\n")
    assert result.returncode == 0, result.stderr
    assert "'alice@example.com' is not a member" in result.stderr
    assert "['alice@example.com']" not in result.stderr


def test_near_miss_region_whole_value_patterns_and_deep_nesting(world):
    (world.root / "vars").write_text(
        GOOD_VARS.replace("europe-west1", "europe-wst1") + 'environment = "prod\\n"\n'
    )
    result = world.deployer("validate")
    assert result.returncode != 0
    assert "region: 'europe-wst1' is not a region" in result.stderr
    assert "did you mean europe-west1?" in result.stderr
    assert "environment: 'prod\\n' must be lowercase" in result.stderr
    (world.root / "vars").write_text("web_app_users = " + "[" * 5000 + "]" * 5000 + "\n")
    deep = world.deployer("validate")
    assert deep.returncode != 0 and "Traceback" not in deep.stderr
    assert "nested too deeply to read" in deep.stderr


def test_members_outside_the_organisation_are_warned_about(world):
    (world.root / "vars").write_text(
        GOOD_VARS.replace('"domain:example.com"', '"user:bob@gmail.com", "user:carol@partner.io"')
    )
    validate = world.deployer("validate")
    assert validate.returncode == 0, validate.stderr
    assert "warning: vars:5: web_app_users: user:bob@gmail.com: IAP's" in validate.stderr
    assert "google_iap_settings" in validate.stderr
    check = world.deployer("check")
    assert check.returncode == 0, check.stdout + check.stderr
    line = next(ln for ln in check.stdout.splitlines() if ln.startswith("warn members"))
    assert "user:bob@gmail.com, user:carol@partner.io" in line and "(example.com)" in line
    no_org = world.deployer("check", FAKE_ORG_DOMAIN="")
    assert no_org.returncode == 0 and "warn members: no organisation found" in no_org.stdout


# ----- deploy ---------------------------------------------------------------------------------


def test_deploy_runs_every_step_in_order_and_prints_the_url(world, health):
    result = world.deployer("deploy", "--health-timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    cmds = world.commands()
    order = [
        "gcloud storage buckets describe",
        "gcloud storage buckets create",
        "gcloud storage buckets update",
        "terraform init",
        "terraform plan",
        "terraform apply",
        "gcloud beta services identity",
        "gcloud artifacts docker images",
        "gcloud builds submit",
        "terraform plan",
        "terraform apply",
        "terraform output",
    ]
    positions = []
    for step in order:
        start = positions[-1] + 1 if positions else 0
        found = next(i for i in range(start, len(cmds)) if cmds[i].startswith(step))
        positions.append(found)
    first_plan = next(c for c in world.calls() if c["argv"][1:2] == ["plan"])
    assert {"-target=module.apis", "-target=module.registry"} <= set(first_plan["argv"])
    # IAP's service agent exists before the full apply grants it the invoker role.
    identity = next(c for c in world.calls() if c["argv"][:3] == ["beta", "services", "identity"])
    assert "--service=iap.googleapis.com" in identity["argv"] and PROJECT in identity["argv"]
    # Terraform runs the migration job inside the apply: no separate execution.
    assert not any(c.startswith("gcloud run jobs execute") for c in cmds)
    assert "1/4" in result.stdout and "4/4" in result.stdout and "/5" not in result.stdout
    assert f"MLflow is up at {health.url}" in result.stdout
    assert f"export MLFLOW_IAP_SERVICE_ACCOUNT={CLIENT_SA}" in result.stdout
    assert "Healthy after" in result.stdout

    # The rendered tfvars are exactly Terraform's variables.
    tfvars = json.loads(
        (world.root / ".deployer" / "default" / "terraform.tfvars.json").read_text()
    )
    assert set(tfvars) == set(_tf_variables()) - (NOT_YET_IN_VARS - set(vars_file.BY_NAME))
    assert tfvars["environment"] == "default"
    assert tfvars["image"] == image_build.image_reference(PROJECT, "europe-west1", "mlflow")
    assert tfvars["image"].endswith(":" + image_build.content_tag())


def test_a_second_deploy_changes_nothing(world):
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    world.reset_log()
    result = world.deployer("deploy", "--health-timeout", "30")
    assert result.returncode == 0, result.stderr
    cmds = world.commands()
    assert not any(
        c.startswith(("gcloud storage buckets create", "gcloud builds submit", "terraform apply"))
        for c in cmds
    ), cmds
    assert "no changes" in result.stdout and "already exists: nothing to build" in result.stdout


def test_dry_run_prints_every_mutation_and_runs_none(world):
    assert world.deployer("deploy").returncode == 0  # a deployed stack to compare against
    (world.root / "vars").write_text(GOOD_VARS + "min_instances = 1\n")
    world.reset_log()
    result = world.deployer("deploy", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "[dry-run] would run: terraform" in result.stdout and " apply " in result.stdout
    executed = [c for c in world.calls() if c["tool"] == "terraform" and c["argv"][1] == "apply"]
    assert executed == []
    assert not any(
        c.startswith(("gcloud run jobs execute", "gcloud builds submit")) for c in world.commands()
    )


def test_apply_failing_half_way_explains_and_a_rerun_resumes(world):
    failed = world.deployer("deploy", "--health-timeout", "30", FAKE_FAIL_ONCE="apply")
    assert failed.returncode != 0
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "terraform apply failed" in lines[0]
    assert "Error 409" in lines[0] and "run the same command again" in lines[0]
    world.reset_log()
    resumed = world.deployer("deploy", "--health-timeout", "30", FAKE_FAIL_ONCE="apply")
    assert resumed.returncode == 0, resumed.stderr
    assert not any(c.startswith("gcloud storage buckets create") for c in world.commands())


def test_health_that_never_comes_up_fails_with_where_to_look(world, health):
    health.state["status"] = 503
    result = world.deployer("deploy", "--health-timeout", "6")
    assert result.returncode != 0
    assert "did not answer 200 within 6 s (last: HTTP 503)" in result.stderr
    assert "gcloud run services logs read" in result.stderr
    assert "--region europe-west1 --project acme-ml" in result.stderr


def test_a_missing_tool_is_one_line_with_the_install_hint(world):
    (world.bin / "terraform").unlink()
    result = world.deployer("deploy", PATH=f"{world.bin}:/usr/bin:/bin")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "terraform is not installed" in lines[0]
    assert "install Terraform" in lines[0]


def test_apply_before_the_image_exists_sets_up_the_registry_and_says_to_build(world):
    first = world.deployer("apply", "--yes")
    assert first.returncode != 0
    assert "is not built yet" in first.stderr and "deployer build" in first.stderr
    plans = [c for c in world.calls() if c["tool"] == "terraform" and c["argv"][1] == "plan"]
    assert all("-target=module.registry" in c["argv"] for c in plans)
    # `deployer apply` alone also leaves IAP's service agent ready for the full apply.
    assert any(c.startswith("gcloud beta services identity") for c in world.commands())
    assert world.deployer("build").returncode == 0
    second = world.deployer("apply", "--yes")
    assert second.returncode == 0, second.stderr
    assert (world.root / ".deployer" / "default" / "outputs.json").exists()


def test_environments_have_their_own_state_and_folder(world):
    for env in ("staging", "prod"):
        (world.root / f"vars.{env}").write_text(GOOD_VARS)
        # Each environment pushes to its own registry repository.
        built = world.deployer("build", "--vars", f"vars.{env}")
        assert built.returncode == 0, built.stderr
        assert f"/{PROJECT}/mlflow-{env}/mlflow-server:" in built.stdout
        assert world.deployer("apply", "--vars", f"vars.{env}", "--yes").returncode == 0
    inits = [c for c in world.calls() if c["tool"] == "terraform" and c["argv"][1] == "init"]
    prefixes = {a for c in inits for a in c["argv"] if a.startswith("-backend-config=prefix=")}
    assert prefixes == {
        "-backend-config=prefix=mlflow/staging",
        "-backend-config=prefix=mlflow/prod",
    }
    dirs = {c["data_dir"] for c in inits}
    assert {Path(d).parent.name for d in dirs} == {"staging", "prod"}


@pytest.mark.parametrize("command", ["deploy", "apply", "destroy"])
def test_dry_run_logged_out_says_what_it_could_not_check_then_what_it_would_do(world, command):
    result = world.deployer(command, "--dry-run", FAKE_LOGGED_OUT="1")
    assert result.returncode != 0
    out = result.stdout.splitlines()
    assert out[0].startswith("[dry-run] could not check: not logged in to Google Cloud")
    assert "gcloud auth application-default login" in out[0]
    assert any("would:" in line for line in out[1:3]) and "state" in result.stdout
    assert "dry run incomplete" in result.stderr and len(result.stderr.splitlines()) == 1
    assert "Creating the state bucket" not in result.stdout
    assert not (world.root / ".deployer").exists()
    assert not [c for c in world.calls() if c["tool"] == "terraform"]


def test_status_logged_out_names_the_login_before_terraform(world):
    result = world.deployer("status", FAKE_LOGGED_OUT="1")
    assert result.returncode != 0
    assert "gcloud auth application-default login" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not [c for c in world.calls() if c["tool"] == "terraform"]


def test_dry_runs_write_nothing_and_apply_before_the_image_exits_zero(world):
    result = world.deployer("apply", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not built yet: apply would stop after the registry" in result.stdout
    assert "the registry is ready" not in result.stdout + result.stderr
    assert world.deployer("deploy", "--dry-run").returncode == 0
    assert not (world.root / ".deployer").exists()


def test_a_state_bucket_of_another_project_is_refused_before_any_state(world):
    result = world.deployer("deploy", FAKE_FOREIGN_BUCKETS="acme-ml-tfstate")
    assert result.returncode != 0
    assert "belongs to another project (number 999999999999)" in result.stderr
    assert "pick another state_bucket" in result.stderr
    assert not [c for c in world.calls() if c["tool"] == "terraform"]
    assert not any(c.startswith("gcloud storage buckets create") for c in world.commands())
    check = world.deployer("check", FAKE_FOREIGN_BUCKETS="acme-ml-tfstate")
    assert check.returncode != 0 and "FAIL state bucket" in check.stdout


# ----- check, status, destroy, cost ----------------------------------------------------------


def test_check_passes_and_says_what_apply_will_enable(world):
    result = world.deployer("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   project: acme-ml (number 123456789012) is ACTIVE" in result.stdout
    assert "will be enabled by apply" in result.stdout and "run.googleapis.com" in result.stdout


@pytest.mark.parametrize(
    ("change", "env", "needle"),
    [
        ('project_id = "acme-other"', {}, "check project_id in the vars file"),
        ("", {"FAKE_BILLING": "off"}, "gcloud billing projects link acme-ml"),
        ("", {"FAKE_TF_VERSION": "1.5.7"}, "upgrade Terraform to 1.9.0 or newer"),
        # A region in the offline table that Cloud Run's live list does not offer.
        ("", {"FAKE_RUN_REGIONS": "us-central1,europe-west2"}, "did you mean europe-west2?"),
    ],
)
def test_check_names_each_failure_and_its_fix(world, change, env, needle):
    text = GOOD_VARS.replace(f'project_id = "{PROJECT}"', change) if change else GOOD_VARS
    (world.root / "vars").write_text(text)
    result = world.deployer("check", **env)
    assert result.returncode != 0
    assert needle in result.stdout, result.stdout


def test_status_shows_url_image_and_health(world, health):
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    result = world.deployer("status")
    assert result.returncode == 0, result.stderr
    assert f"url          {health.url}" in result.stdout
    assert "image        europe-west1-docker.pkg.dev/acme-ml/mlflow/mlflow-server:" in result.stdout
    assert "health       ok" in result.stdout


def test_status_says_the_database_sleeps_and_an_apply_wakes_it_first(world):
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    assert "db state     awake" in world.deployer("status").stdout
    (world.cloud / "sql.json").write_text(json.dumps({"mlflow-db-a1b2c3": "NEVER"}))
    assert "db state     asleep" in world.deployer("status").stdout
    world.reset_log()
    result = world.deployer("deploy", "--health-timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "waking it for the apply" in result.stdout
    calls = world.calls()
    patch = [c["argv"][:3] for c in calls].index(["sql", "instances", "patch"])
    plans = [i for i, c in enumerate(calls) if c["tool"] == "terraform" and "plan" in c["argv"]]
    assert plans[0] < patch < plans[-1], "the database is up before the full plan and apply"
    assert json.loads((world.cloud / "sql.json").read_text()) == {"mlflow-db-a1b2c3": "ALWAYS"}


def test_destroy_asks_for_the_project_and_keeps_the_data(world):
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    refused = world.deployer("destroy", input_text="wrong-project\n")
    assert refused.returncode != 0 and "nothing was destroyed" in refused.stderr
    assert "Kept: the database" in refused.stdout
    world.reset_log()
    kept = world.deployer("destroy", input_text=f"{PROJECT}\n")
    assert kept.returncode == 0, kept.stderr
    destroy = next(
        c for c in world.calls() if c["tool"] == "terraform" and c["argv"][1] == "destroy"
    )
    assert {a for a in destroy["argv"] if a.startswith("-target=")} == {
        "-target=module.service",
        "-target=module.access",
        "-target=module.registry",
    }


def test_destroy_delete_data_lifts_protection_first(world):
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    world.reset_log()
    result = world.deployer("destroy", "--delete-data", "--yes")
    assert result.returncode == 0, result.stderr
    assert "EVERYTHING" in result.stdout
    calls = world.calls()
    tf = [(i, c) for i, c in enumerate(calls) if c["tool"] == "terraform"]
    applied = next(i for i, c in tf if c["argv"][1] == "apply")
    destroys = [(i, c) for i, c in tf if c["argv"][1] == "destroy"]
    delete_peering = ["compute", "networks", "peerings", "delete"]
    peering = next(i for i, c in enumerate(calls) if c["argv"][:4] == delete_peering)
    # Protection off, everything but the network, the peering, then the network.
    assert len(destroys) == 2 and applied < destroys[0][0] < peering < destroys[1][0]
    # Only the data is applied to: the service is not rolled out on its way out.
    lift_plan = [c for i, c in tf if c["argv"][1] == "plan" and i < applied][-1]
    lift_targets = {a for a in lift_plan["argv"] if a.startswith("-target=")}
    assert lift_targets == {"-target=module.database", "-target=module.artifacts"}
    first_targets = {a for a in destroys[0][1]["argv"] if a.startswith("-target=")}
    assert "-target=module.network" not in first_targets
    assert {"-target=module.database", "-target=module.service"} <= first_targets
    assert not any(a.startswith("-target=") for a in destroys[1][1]["argv"])
    assert "servicenetworking-googleapis-com" in calls[peering]["argv"]
    assert "mlflow-network" in calls[peering]["argv"]
    tfvars = json.loads(
        (world.root / ".deployer" / "default" / "terraform.tfvars.json").read_text()
    )
    assert tfvars["deletion_protection"] is False and tfvars["artifacts_force_destroy"] is True


def test_delete_data_leaves_a_network_it_did_not_create_alone(world):
    (world.root / "vars").write_text(
        GOOD_VARS + 'network_name = "shared-vpc"\nsubnetwork_name = "team"\n'
    )
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    world.reset_log()
    result = world.deployer("destroy", "--delete-data", "--yes")
    assert result.returncode == 0, result.stderr
    assert not any(c.startswith("gcloud compute networks") for c in world.commands())


@pytest.mark.parametrize(
    ("ranges", "reused"),
    [
        (None, False),  # no private services access yet: the stack creates it
        (["mlflow-private-services"], False),  # ours, from an earlier deploy: keep managing it
        (["corp-google-services"], True),  # someone else's: CreateConnection would fail
    ],
)
def test_an_existing_networks_private_services_access_is_reused(world, ranges, reused):
    (world.root / "vars").write_text(
        GOOD_VARS + 'network_name = "shared-vpc"\nsubnetwork_name = "team"\n'
    )
    if ranges is not None:
        (world.cloud / "peerings.json").write_text(json.dumps({"shared-vpc": ranges}))
    result = world.deployer("deploy", "--health-timeout", "30")
    assert result.returncode == 0, result.stderr
    tfvars = json.loads(
        (world.root / ".deployer" / "default" / "terraform.tfvars.json").read_text()
    )
    assert tfvars.get("reuse_private_services_access", False) is reused
    assert ("already has private services access" in result.stdout) is reused


def test_two_environments_push_to_their_own_registries(world):
    staging = vars_file.parse(GOOD_VARS + 'environment = "staging"\n')
    default = vars_file.parse(GOOD_VARS)
    assert image_build.image_for(default).startswith(
        f"europe-west1-docker.pkg.dev/{PROJECT}/mlflow/mlflow-server:"
    )
    assert image_build.image_for(staging).startswith(
        f"europe-west1-docker.pkg.dev/{PROJECT}/mlflow-staging/mlflow-server:"
    )


def test_cost_shows_each_choice_and_beats_always_on_app_engine(world):
    (world.root / "vars").write_text(GOOD_VARS + 'vpc_egress = "connector"\n')
    result = world.deployer("cost")
    assert result.returncode == 0, result.stderr
    assert "Serverless VPC connector" in result.stdout and "checked 2026-" in result.stdout
    defaults = {f.name: f.default for f in vars_file.FIELDS}
    assert defaults["vpc_egress"] == "direct"  # no standing instances by default
    connector = cost.estimate({**defaults, "vpc_egress": "connector"}, cost.Usage())
    direct = cost.estimate(defaults, cost.Usage())
    warm = cost.estimate({**defaults, "min_instances": 1}, cost.Usage())
    assert connector.total - direct.total == pytest.approx(12.22, abs=0.01)
    assert warm.total > connector.total
    engine = cost.app_engine_flexible_estimate(cost.Usage())
    assert direct.total / engine.total <= 0.35
    assert connector.total < engine.total


def test_image_tag_follows_the_content(tmp_path):
    for rel in image_build.INPUTS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    server = tmp_path / image_build.PACKAGE_INPUTS
    server.mkdir(parents=True)
    (server / "a.py").write_text("x = 1\n")
    first = image_build.content_tag(tmp_path)
    assert image_build.content_tag(tmp_path) == first
    # The CLI is not in the image: changing it keeps the tag.
    (tmp_path / "deployer" / "cli.py").write_text("y = 1\n")
    assert image_build.content_tag(tmp_path) == first
    time.sleep(0.01)
    (server / "a.py").write_text("x = 2\n")
    assert image_build.content_tag(tmp_path) != first


def test_token_and_env_read_the_deployed_outputs(world, health, fakes):
    assert world.deployer("deploy", "--health-timeout", "30").returncode == 0
    env = world.deployer("env")
    assert env.returncode == 0, env.stderr
    assert f"export MLFLOW_TRACKING_URI={health.url}" in env.stdout
    assert f"export MLFLOW_IAP_SERVICE_ACCOUNT={CLIENT_SA}" in env.stdout
    token = world.deployer("token")
    assert token.returncode == 0, token.stderr
    from deployer.server import jose

    claims = jose.verify(
        token.stdout.strip(),
        lambda kid: fakes.accounts[CLIENT_SA].key.public_key(),
        algorithms=["RS256"],
        audience=f"{health.url}/*",
        issuers=[CLIENT_SA],
    )
    assert claims["sub"] == CLIENT_SA
