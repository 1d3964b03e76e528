"""terraform/ proven offline (tests/terraform/tfcheck.py), and each check shown to catch a
deliberately broken copy. Also the static contracts between terraform/ and the server."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest

from deployer.server.settings import Env
from tests.conftest import REPO
from tests.terraform import tfcheck

TF = REPO / "terraform"


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    return tfcheck.StandInProviders(tmp_path_factory.mktemp("providers"))


@pytest.fixture
def broken(tmp_path):
    """A copy of terraform/ to break, and a helper that edits one file of it."""
    copy = tfcheck._copy(TF, tmp_path / "terraform")

    def edit(relative: str, old: str, new: str) -> Path:
        path = copy / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))
        return copy

    return copy, edit


def test_every_check_passes_on_our_terraform():
    lines: list[str] = []
    results = tfcheck.run_all(TF, echo=lines.append)
    failures = [f"{r.name}: {r.detail}" for r in results if not r.ok]
    assert failures == [], "\n".join(lines)
    names = {r.name for r in results}
    assert {"fmt", "schema", "terraform test", "checkov", "trivy", "validate root"} <= names
    assert len([n for n in names if n.startswith("validate modules/")]) == 8
    tests = next(r for r in results if r.name == "terraform test")
    assert tests.passed >= 30


def test_fmt_catches_a_misformatted_file(broken):
    copy, edit = broken
    edit("modules/registry/main.tf", '  format        = "DOCKER"', 'format="DOCKER"')
    result = tfcheck.check_fmt(copy)
    assert not result.ok and "modules/registry/main.tf" in result.detail


def test_validate_catches_a_misspelled_argument(broken, providers):
    copy, edit = broken
    edit("modules/service/main.tf", "  iap_enabled = true", "  iap_enable  = true")
    results = {
        r.name: r
        for r in tfcheck.check_validate(copy, providers, ("modules/service", "modules/network"))
    }
    bad = results["validate modules/service"]
    assert not bad.ok and "Unsupported argument" in bad.detail and "main.tf line" in bad.detail
    assert results["validate modules/network"].ok


def test_validate_catches_a_missing_required_block_and_argument(broken, providers):
    copy, edit = broken
    edit(
        "modules/artifacts/main.tf",
        """    action {
      type = "Delete"
    }""",
        "",
    )
    edit(
        "modules/database/main.tf",
        '  database_version    = local.postgres ? "POSTGRES_16" : "MYSQL_8_4"\n',
        "",
    )
    results = {
        r.name: r
        for r in tfcheck.check_validate(copy, providers, ("modules/artifacts", "modules/database"))
    }
    assert "Insufficient action blocks" in results["validate modules/artifacts"].detail
    assert "Missing required argument" in results["validate modules/database"].detail


def test_validate_catches_a_wrong_type_and_a_removed_resource_type(broken, providers):
    copy, edit = broken
    edit(
        "modules/artifacts/main.tf",
        "uniform_bucket_level_access = true",
        'uniform_bucket_level_access = "yes please"',
    )
    # google_iap_brand was removed in provider 8.0 (the OAuth admin API shut down).
    edit(
        "modules/access/main.tf",
        'resource "google_service_account" "client" {',
        'resource "google_iap_brand" "old" {\n  support_email = "a@b.c"\n'
        '  application_title = "x"\n}\n\nresource "google_service_account" "client" {',
    )
    results = {
        r.name: r
        for r in tfcheck.check_validate(copy, providers, ("modules/artifacts", "modules/access"))
    }
    assert "Incorrect attribute value type" in results["validate modules/artifacts"].detail
    assert "Invalid resource type" in results["validate modules/access"].detail


def test_terraform_test_catches_a_failing_assertion(broken, providers):
    copy, edit = broken
    edit(
        "modules/service/main.tf",
        "        cpu_idle          = true",
        "        cpu_idle          = false",
    )
    result = tfcheck.check_tests(copy, providers)
    assert not result.ok and "iap_is_on_and_the_server_scales_to_zero" in result.detail


def test_terraform_test_catches_a_validation_that_stopped_rejecting(broken, providers):
    copy, edit = broken
    edit(
        "variables.tf",
        'condition     = contains(["postgresql", "mysql"], var.db_engine)',
        "condition     = length(var.db_engine) > 0",
    )
    edit(
        "tests/root.tftest.hcl",
        'run "tier_format" {',
        'run "engine_format" {\n'
        '  command         = plan\n  variables { db_engine = "oracle" }\n'
        '  expect_failures = [var.db_engine]\n}\n\nrun "tier_format" {',
    )
    result = tfcheck.check_tests(copy, providers)
    assert not result.ok and "engine_format" in result.detail


def test_scanners_catch_an_insecure_setting(broken):
    copy, edit = broken
    edit(
        "modules/artifacts/main.tf",
        "uniform_bucket_level_access = true",
        "uniform_bucket_level_access = false",
    )
    checkov = tfcheck.check_checkov(copy)
    trivy = tfcheck.check_trivy(copy)
    assert not checkov.ok and "google_storage_bucket" in checkov.detail
    assert not trivy.ok and "AVD-GCP" in trivy.detail


def test_schema_version_must_match_versions_tf(broken):
    copy, edit = broken
    edit("versions.tf", 'version = ">= 8.7.0, < 9.0.0"', 'version = ">= 9.0.0"')
    result = tfcheck.check_schema_versions(copy)
    assert not result.ok and "google 8.7.0" in result.detail


# ----- static contracts -----------------------------------------------------------------------


def _unquote(node):
    """python-hcl2 8 keeps the quotes of block labels ('"google_x"'); drop them."""
    if isinstance(node, dict):
        return {k.strip('"') if isinstance(k, str) else k: _unquote(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


def _load(path: Path) -> dict:
    with path.open() as f:
        return _unquote(hcl2.load(f))


def _resources(kind: str) -> list[tuple[Path, str, dict]]:
    found = []
    for path in TF.rglob("*.tf"):
        for block in _load(path).get("resource", []):
            for rtype, named in block.items():
                if rtype == kind:
                    for name, body in named.items():
                        found.append((path, name, body))
    return found


def test_server_env_names_come_from_the_settings_contract():
    doc = _load(TF / "modules" / "service" / "main.tf")
    env_keys = set(next(loc["env"] for loc in doc["locals"] if "env" in loc))
    # The sleeping database's settings are read by deployer/server/wake.py.
    wake_reads = {"DB_SLEEP_AFTER_MINUTES", "LAST_REQUEST_OBJECT"}
    wake_source = (REPO / "deployer" / "server" / "wake.py").read_text()
    assert all(f'"{name}"' in wake_source for name in wake_reads)
    known = {e.value for e in Env} | wake_reads
    assert env_keys - known == set(), "Terraform sets variables the server does not read"
    container = next(loc["container"] for loc in doc["locals"] if "container" in loc)
    assert set(container["secrets"]) == {Env.DB_PASSWORD.value}  # from Secret Manager
    for required in (
        Env.AUTH_MODE,
        Env.IAP_AUDIENCE,
        Env.DB_USER,
        Env.DB_NAME,
        Env.CLOUD_SQL_CONNECTION_NAME,
        Env.ARTIFACTS_DESTINATION,
        Env.ALLOWED_HOSTS,
        Env.SIGNING_SERVICE_ACCOUNT,
        Env.DB_MAX_CONNECTIONS,
        Env.MAX_INSTANCES,
    ):
        assert required.value in env_keys


def test_nothing_project_wide_but_cloud_sql_client():
    """Besides roles/cloudsql.client, only the sleeping database's custom role, and that only
    under a condition naming the one instance (IAM has no instance-level Cloud SQL grants)."""
    grants = _resources("google_project_iam_member") + _resources("google_project_iam_binding")
    unconditional = [body["role"] for _, _, body in grants if "condition" not in body]
    assert unconditional == ["roles/cloudsql.client"]
    conditioned = [body for _, _, body in grants if "condition" in body]
    assert len(conditioned) == 2
    for body in conditioned:
        assert body["role"] == "${google_project_iam_custom_role.sql_activation.name}"
        (condition,) = body["condition"]
        expression = condition["expression"].replace('\\"', '"')
        assert expression == 'resource.name == "${local.instance_rn}"'
    ((_, _, role),) = _resources("google_project_iam_custom_role")
    assert role["permissions"] == ["cloudsql.instances.get", "cloudsql.instances.update"]
    assert _resources("google_project_iam_policy") == []


def test_no_iap_oauth_brands_and_no_key_files():
    for kind in ("google_iap_brand", "google_iap_client", "google_service_account_key"):
        assert _resources(kind) == [], kind


def test_region_is_never_hard_coded():
    pattern = re.compile(
        r'"(us|europe|asia|australia|northamerica|southamerica|me|africa)-'
        r'[a-z]+[0-9]+"'
    )
    offenders = [str(p.relative_to(TF)) for p in TF.rglob("*.tf") if pattern.search(p.read_text())]
    assert offenders == []


def test_every_variable_is_typed_and_described():
    for path in TF.rglob("variables.tf"):
        for block in _load(path).get("variable", []):
            for name, body in block.items():
                assert "type" in body, f"{path}: {name} has no type"
                assert body.get("description"), f"{path}: {name} has no description"


def test_every_module_has_the_four_files():
    for module in (TF / "modules").iterdir():
        for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
            assert (module / name).exists(), f"{module.name} lacks {name}"


def test_tf_check_cli_ends_with_the_plain_count_line(monkeypatch, capsys):
    """The CLI's count line: terraform test runs count one each, other steps one."""
    canned = [
        tfcheck.StepResult("fmt", True),
        tfcheck.StepResult("terraform test", True, passed=32),
        tfcheck.StepResult("checkov", False, "CKV_GCP_1 x", passed=0, failed=1),
    ]
    monkeypatch.setattr(tfcheck, "run_all", lambda tf_dir: canned)
    code = tfcheck.main(["tfcheck", str(TF)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert out[-1] == "tf-check: 33 passed, 1 failed"


def test_readme_documents_every_variable_as_generated():
    from tests.terraform import docs

    readme = (REPO / "README.md").read_text()
    assert docs.render(readme) == readme, "README.md's variable table is stale: run `make docs`"
    for var in docs.variables(TF / "variables.tf"):
        assert f"| `{var['name']}` |" in readme


def test_the_service_rolls_out_only_after_the_migration_job_ran():
    """Terraform executes the job (run_execution_token) and waits for it; the service must
    depend on it, or a new revision would start against an old schema and fail its probe."""
    ((_, _, service),) = _resources("google_cloud_run_v2_service")
    (job,) = [j for _, name, j in _resources("google_cloud_run_v2_job") if name == "migrate"]
    assert "${google_cloud_run_v2_job.migrate}" in service["depends_on"]
    assert job["run_execution_token"] == "${local.migration_token}"
    assert service["deletion_protection"] is False and job["deletion_protection"] is False


def test_the_apply_outwaits_the_migrations_worst_case():
    """The provider waits 20 minutes by default for a job's create/update, exactly a 600 s task
    retried once: the apply must allow more, or a slow first migration fails the deploy."""
    (job,) = [j for _, name, j in _resources("google_cloud_run_v2_job") if name == "migrate"]
    task = job["template"][0]["template"][0]
    worst = int(task["timeout"].removesuffix("s")) * (task["max_retries"] + 1)
    (timeouts,) = job["timeouts"]
    for op in ("create", "update"):
        assert int(timeouts[op].removesuffix("m")) * 60 > worst, (op, timeouts)


def test_the_password_reaches_the_user_and_the_secret_write_only():
    """Write-only arguments keep the password out of the user's and the secret version's state."""
    ((_, _, user),) = _resources("google_sql_user")
    ((_, _, version),) = _resources("google_secret_manager_secret_version")
    assert "password" not in user and "password_wo" in user and "password_wo_version" in user
    assert "secret_data" not in version and "secret_data_wo" in version
    assert "secret_data_wo_version" in version


def test_terraform_and_the_deployer_name_the_registry_alike(tmp_path, providers):
    """image_build.repository_id and terraform/main.tf's local.name, run on the same inputs."""
    from deployer import image_build

    cases = [("mlflow", "default"), ("mlflow", "staging"), ("tracking", "prod-eu-1")]
    copy = tfcheck._copy(TF, tmp_path / "terraform")
    for old in (copy / "tests").glob("*.tftest.hcl"):
        old.unlink()
    runs = [
        f'run "case_{i}" {{\n  command = apply\n'
        f'  variables {{\n    service_name = "{service}"\n    environment  = "{env}"\n  }}\n'
        f"  assert {{\n    condition     = output.image_repository == "
        f'"europe-west1-docker.pkg.dev/acme-ml/{image_build.repository_id(service, env)}"\n'
        f'    error_message = "differs from image_build.repository_id"\n  }}\n}}\n'
        for i, (service, env) in enumerate(cases)
    ]
    header = (TF / "tests" / "root.tftest.hcl").read_text().split('run "', 1)[0]
    (copy / "tests" / "names.tftest.hcl").write_text(header + "\n".join(runs))
    result = tfcheck.check_tests(copy, providers)
    assert result.ok and result.passed == len(cases), result.detail
