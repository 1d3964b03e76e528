"""`deployer check`: everything a deploy needs, one line per check, with the fix on failure."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from deployer.runner import Runner, ToolError
from deployer.stack import TERRAFORM_MIN_VERSION, terraform_dir, terraform_version
from deployer.vars import Settings


def required_apis() -> list[str]:
    """The APIs terraform/modules/apis enables: read from there, so the two never differ."""
    text = (terraform_dir() / "modules" / "apis" / "main.tf").read_text()
    return re.findall(r'"([a-z0-9.-]+\.googleapis\.com)"', text)


# Roles that let the caller create everything in the stack (any one of the sets suffices).
SUFFICIENT_ROLES = (
    {"roles/owner"},
    {"roles/editor", "roles/resourcemanager.projectIamAdmin", "roles/iap.admin"},
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok else f" -> {self.fix}")


def _check(name: str, fn: Callable[[], tuple[bool, str, str]]) -> CheckResult:
    try:
        ok, detail, fix = fn()
    except ToolError as e:
        return CheckResult(name, False, str(e), "see the message")
    return CheckResult(name, ok, detail, fix)


def run_checks(settings: Settings, runner: Runner) -> list[CheckResult]:
    project = settings["project_id"]
    results: list[CheckResult] = []
    quiet = Runner(dry_run=runner.dry_run, echo=lambda _: None, env=runner.env)

    def gcloud_present() -> tuple[bool, str, str]:
        r = quiet.run(["gcloud", "version", "--format=json"], step="gcloud version")
        version = (r.json() or {}).get("Google Cloud SDK", "?")
        return True, f"gcloud {version}", ""

    def terraform_present() -> tuple[bool, str, str]:
        version = terraform_version(quiet)
        wanted = ".".join(map(str, TERRAFORM_MIN_VERSION))
        ok = version >= TERRAFORM_MIN_VERSION
        return (
            ok,
            f"terraform {'.'.join(map(str, version))}",
            f"upgrade Terraform to {wanted} or newer",
        )

    results.append(_check("gcloud", gcloud_present))
    results.append(_check("terraform", terraform_present))
    if not results[0].ok:
        return results

    account: dict[str, str] = {}

    def credentials() -> tuple[bool, str, str]:
        r = quiet.run(
            ["gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=json"],
            step="gcloud auth list",
        )
        active = [a["account"] for a in r.json() or [] if a.get("status") == "ACTIVE"]
        if not active:
            return False, "no active gcloud account", "run `gcloud auth login`"
        account["email"] = active[0]
        adc = quiet.run(
            ["gcloud", "auth", "application-default", "print-access-token"],
            step="application-default credentials",
            ok_codes=(0, 1),
        )
        if adc.returncode != 0:
            return (
                False,
                f"signed in as {active[0]}, but no application-default credentials",
                "run `gcloud auth application-default login` (Terraform uses them)",
            )
        return True, f"signed in as {active[0]}", ""

    def project_reachable() -> tuple[bool, str, str]:
        r = quiet.run(
            ["gcloud", "projects", "describe", project, "--format=json"],
            step="gcloud projects describe",
            ok_codes=(0, 1),
        )
        if r.returncode != 0:
            return (
                False,
                f"project {project} not found or not visible to you",
                "check project_id in the vars file (the ID, not the name), or ask for access",
            )
        doc = r.json()
        state = doc.get("lifecycleState", "?")
        account["number"] = str(doc.get("projectNumber", ""))
        return (
            state == "ACTIVE",
            f"{project} (number {account['number']}) is {state}",
            "restore the project or pick another",
        )

    def billing() -> tuple[bool, str, str]:
        r = quiet.run(
            ["gcloud", "billing", "projects", "describe", project, "--format=json"],
            step="gcloud billing projects describe",
            ok_codes=(0, 1),
        )
        enabled = r.returncode == 0 and bool((r.json() or {}).get("billingEnabled"))
        return (
            enabled,
            "billing enabled" if enabled else "billing is not enabled",
            f"link a billing account: gcloud billing projects link {project} --billing-account=ID",
        )

    def roles() -> tuple[bool, str, str]:
        r = quiet.run(
            ["gcloud", "projects", "get-iam-policy", project, "--format=json"],
            step="gcloud projects get-iam-policy",
            ok_codes=(0, 1),
        )
        if r.returncode != 0:
            return (
                False,
                "cannot read the project's IAM policy",
                "you need roles/owner (or editor + project IAM admin + IAP admin)",
            )
        me = {f"user:{account.get('email')}", f"serviceAccount:{account.get('email')}"}
        held = {
            b["role"]
            for b in (r.json() or {}).get("bindings", [])
            if me & set(b.get("members", []))
        }
        ok = any(needed <= held for needed in SUFFICIENT_ROLES)
        shown = ", ".join(sorted(held)) or "none directly (groups are not resolved)"
        return (
            ok,
            f"your roles: {shown}",
            f"ask an owner for roles/owner on {project} (or editor + projectIamAdmin + iap.admin)",
        )

    def apis() -> tuple[bool, str, str]:
        r = quiet.run(
            ["gcloud", "services", "list", "--enabled", "--project", project, "--format=json"],
            step="gcloud services list",
            ok_codes=(0, 1),
        )
        enabled = (
            {s.get("config", {}).get("name") for s in (r.json() or [])}
            if r.returncode == 0
            else set()
        )
        missing = [a for a in required_apis() if a not in enabled]
        detail = (
            "all enabled"
            if not missing
            else f"{len(missing)} will be enabled by apply: {', '.join(missing)}"
        )
        return True, detail, ""

    for name, fn in (
        ("credentials", credentials),
        ("project", project_reachable),
        ("billing", billing),
        ("permissions", roles),
        ("APIs", apis),
    ):
        result = _check(name, fn)
        results.append(result)
        if name in ("credentials", "project") and not result.ok:
            break
    return results
