"""`deployer check`: everything a deploy needs, one line per check, with the fix on failure.

Each check is a small function of one `Probe` (the settings, a quiet runner and what earlier
checks found); `run_checks` runs them in order and stops where later ones cannot mean anything.
`access_problems` is the short version the dry runs and `status`/`destroy` use first, so they
say what they could not check before they say what they would do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from deployer import limits
from deployer import vars as vars_file
from deployer.runner import Runner, ToolError
from deployer.stack import (
    TERRAFORM_MIN_VERSION,
    foreign_bucket_message,
    state_bucket_owner,
    terraform_dir,
    terraform_version,
)
from deployer.vars import Settings

ADC_LOGIN = "gcloud auth application-default login"


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
    warning: bool = False

    def line(self) -> str:
        mark = ("warn" if self.warning else "ok  ") if self.ok else "FAIL"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok else f" -> {self.fix}")


@dataclass
class Probe:
    """What the checks share: the settings, a quiet runner, and what was found so far."""

    settings: Settings
    runner: Runner
    account: str = ""
    project_number: str = ""
    found: dict[str, str] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.settings["project_id"]

    def gcloud(self, *args: str, step: str, ok_codes: tuple[int, ...] = (0, 1)):
        return self.runner.run(["gcloud", *args, "--format=json"], step=step, ok_codes=ok_codes)


Check = Callable[[Probe], CheckResult]


def check_gcloud(p: Probe) -> CheckResult:
    r = p.runner.run(["gcloud", "version", "--format=json"], step="gcloud version")
    return CheckResult("gcloud", True, f"gcloud {(r.json() or {}).get('Google Cloud SDK', '?')}")


def check_terraform(p: Probe) -> CheckResult:
    version = terraform_version(p.runner)
    wanted = ".".join(map(str, TERRAFORM_MIN_VERSION))
    return CheckResult(
        "terraform",
        version >= TERRAFORM_MIN_VERSION,
        f"terraform {'.'.join(map(str, version))}",
        f"upgrade Terraform to {wanted} or newer",
    )


def check_credentials(p: Probe) -> CheckResult:
    r = p.gcloud("auth", "list", "--filter=status:ACTIVE", step="gcloud auth list", ok_codes=(0,))
    active = [a["account"] for a in r.json() or [] if a.get("status") == "ACTIVE"]
    if not active:
        return CheckResult(
            "credentials",
            False,
            "not logged in to Google Cloud",
            f"run `gcloud auth login` and `{ADC_LOGIN}`",
        )
    p.account = active[0]
    adc = p.runner.run(
        ["gcloud", "auth", "application-default", "print-access-token"],
        step="application-default credentials",
        ok_codes=(0, 1),
    )
    if adc.returncode != 0:
        return CheckResult(
            "credentials",
            False,
            f"signed in as {active[0]}, but no application-default credentials",
            f"run `{ADC_LOGIN}` (Terraform uses them)",
        )
    return CheckResult("credentials", True, f"signed in as {active[0]}")


def check_project(p: Probe) -> CheckResult:
    r = p.gcloud("projects", "describe", p.project, step="gcloud projects describe")
    if r.returncode != 0:
        return CheckResult(
            "project",
            False,
            f"project {p.project} not found or not visible to you",
            "check project_id in the vars file (the ID, not the name), or ask for access",
        )
    doc = r.json() or {}
    state = doc.get("lifecycleState", "?")
    p.project_number = str(doc.get("projectNumber", ""))
    return CheckResult(
        "project",
        state == "ACTIVE",
        f"{p.project} (number {p.project_number}) is {state}",
        "restore the project or pick another",
    )


def check_billing(p: Probe) -> CheckResult:
    r = p.gcloud("billing", "projects", "describe", p.project, step="gcloud billing")
    enabled = r.returncode == 0 and bool((r.json() or {}).get("billingEnabled"))
    return CheckResult(
        "billing",
        enabled,
        "billing enabled" if enabled else "billing is not enabled",
        f"link a billing account: gcloud billing projects link {p.project} --billing-account=ID",
    )


def check_roles(p: Probe) -> CheckResult:
    fix = f"ask an owner for roles/owner on {p.project} (or editor + projectIamAdmin + iap.admin)"
    r = p.gcloud("projects", "get-iam-policy", p.project, step="gcloud projects get-iam-policy")
    if r.returncode != 0:
        return CheckResult("permissions", False, "cannot read the project's IAM policy", fix)
    me = {f"user:{p.account}", f"serviceAccount:{p.account}"}
    bindings = (r.json() or {}).get("bindings", [])
    held = {b["role"] for b in bindings if me & set(b.get("members", []))}
    ok = any(needed <= held for needed in SUFFICIENT_ROLES)
    shown = ", ".join(sorted(held)) or "none directly (groups are not resolved)"
    return CheckResult("permissions", ok, f"your roles: {shown}", fix)


def check_apis(p: Probe) -> CheckResult:
    r = p.gcloud("services", "list", "--enabled", "--project", p.project, step="services list")
    services = r.json() or [] if r.returncode == 0 else []
    enabled = {s.get("config", {}).get("name") for s in services}
    missing = [a for a in required_apis() if a not in enabled]
    detail = f"{len(missing)} will be enabled by apply: {', '.join(missing)}" if missing else ""
    return CheckResult("APIs", True, detail or "all enabled")


def check_region(p: Probe) -> CheckResult:
    """The region against Cloud Run's live list (`gcloud run regions list`); the offline list in
    limits.json already refused names neither service offers."""
    region = p.settings["region"]
    r = p.gcloud("run", "regions", "list", "--project", p.project, step="gcloud run regions list")
    live = [x.get("locationId") for x in (r.json() or [])] if r.returncode == 0 else []
    if not live:
        return CheckResult(
            "region", True, f"{region} (Cloud Run's live list could not be read)", warning=True
        )
    if region in live:
        return CheckResult("region", True, f"{region} offers Cloud Run")
    guess = limits.closest(region, live)
    hint = f"did you mean {guess}? " if guess else ""
    return CheckResult(
        "region",
        False,
        f"Cloud Run does not offer {region} to this project",
        f"{hint}set region in the vars file to one of: gcloud run regions list",
    )


def check_state_bucket(p: Probe) -> CheckResult:
    bucket = p.settings["state_bucket"]
    owner = state_bucket_owner(p.runner, bucket)
    if owner is None:
        return CheckResult("state bucket", True, f"gs://{bucket} will be created by deploy")
    if p.project_number and owner and owner != p.project_number:
        message = foreign_bucket_message(bucket, owner, p.project, p.project_number)
        problem, _, fix = message.partition(": ")
        return CheckResult("state bucket", False, problem, fix)
    return CheckResult("state bucket", True, f"gs://{bucket} exists in {p.project}")


def organisation_domain(p: Probe) -> str | None:
    r = p.gcloud("projects", "get-ancestors", p.project, step="gcloud projects get-ancestors")
    orgs = [a["id"] for a in (r.json() or []) if a.get("type") == "organization"]
    if r.returncode != 0 or not orgs:
        return None
    org = p.gcloud("organizations", "describe", orgs[0], step="gcloud organizations describe")
    return (org.json() or {}).get("displayName") if org.returncode == 0 else None


def check_members(p: Probe) -> CheckResult:
    """IAP's Google-managed OAuth client admits only identities of the project's organisation."""
    domain = organisation_domain(p)
    if domain is None:
        return CheckResult(
            "members",
            True,
            f"no organisation found above {p.project} (or you cannot see it): IAP's "
            "Google-managed OAuth client admits only members of the project's organisation; "
            "see README, 'Members outside your organisation'",
            warning=True,
        )
    warning = vars_file.outside_organisation_warning(p.settings["web_app_users"], domain)
    if warning:
        return CheckResult("members", True, warning, warning=True)
    return CheckResult("members", True, f"every member is in the organisation ({domain})")


def _run(p: Probe, check: Check, name: str) -> CheckResult:
    try:
        return check(p)
    except ToolError as e:
        return CheckResult(name, False, str(e), "see the message")


# (name, check, stop here when it fails: later checks would only repeat the failure)
CHECKS: tuple[tuple[str, Check, bool], ...] = (
    ("gcloud", check_gcloud, False),
    ("terraform", check_terraform, False),
    ("credentials", check_credentials, True),
    ("project", check_project, True),
    ("billing", check_billing, False),
    ("permissions", check_roles, False),
    ("APIs", check_apis, False),
    ("region", check_region, False),
    ("state bucket", check_state_bucket, False),
    ("members", check_members, False),
)


def run_checks(settings: Settings, runner: Runner) -> list[CheckResult]:
    quiet = Runner(dry_run=runner.dry_run, echo=lambda _: None, env=runner.env)
    probe = Probe(settings, quiet)
    results: list[CheckResult] = []
    for name, check, stop in CHECKS:
        result = _run(probe, check, name)
        results.append(result)
        if not result.ok and (stop or name == "gcloud"):
            break
    return results


def access_problems(settings: Settings, runner: Runner) -> list[CheckResult]:
    """Credentials and project, checked quietly: what a command could not check, if anything."""
    probe = Probe(settings, Runner(dry_run=runner.dry_run, echo=lambda _: None, env=runner.env))
    for name, check in (("credentials", check_credentials), ("project", check_project)):
        result = _run(probe, check, name)
        if not result.ok:
            return [result]
    return []
