"""One environment's Terraform: its working folder, state bucket, plan, apply and outputs.

Each environment (a vars file) gets `.deployer/ENV/` for its rendered tfvars, plan and cached
outputs, Terraform's data dir, and its own state under gs://STATE_BUCKET/mlflow/ENV. The same
`terraform/` serves every environment.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import deployer
from deployer.runner import Result, Runner, ToolError
from deployer.vars import Settings

REPO_ROOT = Path(deployer.__file__).resolve().parent.parent
TERRAFORM_MIN_VERSION = (1, 9, 0)
RESUME = "Fix what it says, then run the same command again: finished steps are skipped."


SERVICE_NETWORKING = "servicenetworking.googleapis.com"


def deployment_name(service_name: str, environment: str) -> str:
    """terraform/main.tf's `local.name`, which every resource is named after (the registry
    repository, the private services range, ...); tests/test_terraform.py checks they agree."""
    return service_name if environment == "default" else f"{service_name}-{environment}"


def terraform_dir() -> Path:
    path = Path(os.environ.get("DEPLOYER_TERRAFORM_DIR") or REPO_ROOT / "terraform")
    if not (path / "main.tf").exists():
        raise ToolError(
            f"no Terraform configuration at {path}: run the deployer from a "
            "checkout of this repository"
        )
    return path


@dataclass(frozen=True)
class PlanSummary:
    changes: bool
    create: int = 0
    update: int = 0
    delete: int = 0
    replace: int = 0

    def describe(self) -> str:
        if not self.changes:
            return "no changes: the deployed stack already matches the settings"
        return (
            f"{self.create} to create, {self.update} to update, {self.replace} to replace, "
            f"{self.delete} to destroy"
        )


class Stack:
    def __init__(self, settings: Settings, runner: Runner, root: Path | None = None) -> None:
        self.settings = settings
        self.runner = runner
        self.tf_dir = terraform_dir()
        if root is None and runner.dry_run:
            # A dry run writes nothing here: its tfvars, plan and Terraform's data dir live in
            # a temporary folder that goes when the command ends.
            root = Path(tempfile.mkdtemp(prefix="deployer-dry-run-"))
            atexit.register(shutil.rmtree, root, True)
        self.workdir = (root or Path.cwd() / ".deployer") / settings.environment
        self.tfvars_path = self.workdir / "terraform.tfvars.json"
        self.plan_path = self.workdir / "plan.tfplan"
        self.outputs_path = self.workdir / "outputs.json"

    @property
    def project(self) -> str:
        return self.settings["project_id"]

    @property
    def region(self) -> str:
        return self.settings["region"]

    @property
    def name(self) -> str:
        return deployment_name(self.settings["service_name"], self.settings.environment)

    @property
    def state_prefix(self) -> str:
        return f"mlflow/{self.settings.environment}"

    def _env(self) -> dict[str, str]:
        return {
            "TF_DATA_DIR": str(self.workdir / ".terraform"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    def terraform(
        self,
        *args: str,
        step: str,
        mutating: bool = False,
        stream: bool = False,
        ok_codes: tuple[int, ...] = (0,),
    ) -> Result:
        return self.runner.run(
            ["terraform", f"-chdir={self.tf_dir}", *args],
            step=step,
            mutating=mutating,
            stream=stream,
            ok_codes=ok_codes,
            extra_env=self._env(),
            fix=RESUME,
        )

    # ----- state bucket --------------------------------------------------------------------
    def state_bucket_exists(self) -> bool:
        """True when the bucket exists and is this project's; another project's is refused."""
        bucket = self.settings["state_bucket"]
        owner = state_bucket_owner(self.runner, bucket)
        if owner is None:
            return False
        number = self.project_number()
        if owner and number and owner != number:
            raise ToolError(foreign_bucket_message(bucket, owner, self.project, number))
        return True

    def project_number(self) -> str:
        r = self.runner.run(
            ["gcloud", "projects", "describe", self.project, "--format=json"],
            step="reading the project's number",
            ok_codes=(0, 1),
        )
        return str((r.json() or {}).get("projectNumber", "")) if r.returncode == 0 else ""

    def ensure_state_bucket(self) -> None:
        bucket = f"gs://{self.settings['state_bucket']}"
        if self.state_bucket_exists():
            self.runner.echo(f"State bucket {bucket} exists.")
            return
        if not self.runner.dry_run:
            self.runner.echo(f"Creating the state bucket {bucket} (versioned) ...")
        self.runner.run(
            [
                "gcloud",
                "storage",
                "buckets",
                "create",
                bucket,
                "--project",
                self.project,
                "--location",
                self.region,
                "--uniform-bucket-level-access",
                "--public-access-prevention",
            ],
            step="creating the state bucket",
            mutating=True,
            fix="Pick another state_bucket name if it is taken (names are global).",
        )
        self.runner.run(
            ["gcloud", "storage", "buckets", "update", bucket, "--versioning"],
            step="turning on versioning of the state bucket",
            mutating=True,
        )

    # ----- terraform -----------------------------------------------------------------------
    def render_tfvars(self, image: str, overrides: dict[str, Any] | None = None) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        values = self.settings.tfvars(image, owner=self.owner_email())
        # Terraform names every resource after the environment too (two can share a project).
        values["environment"] = self.settings.environment
        if "reuse_private_services_access" not in values and self.reuses_private_services():
            values["reuse_private_services_access"] = True
        values.update(overrides or {})
        self.tfvars_path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        return self.tfvars_path

    def owner_email(self) -> str | None:
        """The active gcloud account: the default admin when web_app_admins is empty."""
        if self.settings["web_app_admins"]:
            return None
        r = self.runner.run(
            ["gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=json"],
            step="gcloud auth list",
            ok_codes=(0, 1),
        )
        accounts = [a.get("account") for a in (r.json() or []) if a.get("status") == "ACTIVE"]
        return accounts[0] if r.returncode == 0 and accounts else None

    def reuses_private_services(self) -> bool:
        """Whether network_name already has private services access that is not this stack's
        own (its range is NAME-private-services): then Terraform must reuse it, because a
        second CreateConnection with other ranges fails. Asked once per Stack."""
        if not hasattr(self, "_reuse"):
            self._reuse = self._find_foreign_private_services()
        return self._reuse

    def _find_foreign_private_services(self) -> bool:
        network = self.settings["network_name"]
        if not network:
            return False
        r = self.runner.run(
            [
                "gcloud",
                "services",
                "vpc-peerings",
                "list",
                "--network",
                network,
                "--service",
                SERVICE_NETWORKING,
                "--project",
                self.project,
                "--format=json",
            ],
            step=f"looking for private services access on network {network}",
            ok_codes=(0, 1),
        )
        connections = (r.json() or []) if r.returncode == 0 else []
        ours = f"{self.name}-private-services"
        ranges = [rng for c in connections for rng in c.get("reservedPeeringRanges", [])]
        if not connections or ours in ranges:
            return False
        self.runner.echo(
            f"Network {network} already has private services access ({', '.join(ranges)}): "
            "Cloud SQL will use it."
        )
        return True

    def init(self) -> None:
        self.terraform(
            "init",
            "-input=false",
            "-reconfigure",
            "-no-color",
            f"-backend-config=bucket={self.settings['state_bucket']}",
            f"-backend-config=prefix={self.state_prefix}",
            step="terraform init",
        )

    def plan(self, targets: tuple[str, ...] = (), destroy: bool = False) -> PlanSummary:
        args = [
            "plan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
            f"-out={self.plan_path}",
            f"-var-file={self.tfvars_path}",
        ]
        args += [f"-target={t}" for t in targets]
        if destroy:
            args.append("-destroy")
        r = self.terraform(*args, step="terraform plan", stream=True, ok_codes=(0, 2))
        if r.returncode == 0:
            return PlanSummary(False)
        shown = self.terraform(
            "show", "-json", "-no-color", str(self.plan_path), step="reading the plan"
        ).json()
        counts = {"create": 0, "update": 0, "delete": 0, "replace": 0}
        for change in shown.get("resource_changes", []):
            actions = change.get("change", {}).get("actions", [])
            if actions == ["create"]:
                counts["create"] += 1
            elif actions == ["update"]:
                counts["update"] += 1
            elif actions == ["delete"]:
                counts["delete"] += 1
            elif set(actions) == {"create", "delete"}:
                counts["replace"] += 1
        return PlanSummary(True, **counts)

    def apply_plan(self) -> None:
        self.terraform(
            "apply",
            "-input=false",
            "-no-color",
            str(self.plan_path),
            step="terraform apply",
            mutating=True,
            stream=True,
        )

    def outputs(self) -> dict[str, Any]:
        doc = self.terraform("output", "-json", "-no-color", step="reading the outputs").json()
        values = {k: v.get("value") for k, v in (doc or {}).items()}
        if values:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.outputs_path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        return values

    def destroy(self, targets: tuple[str, ...] = ()) -> None:
        args = [
            "destroy",
            "-input=false",
            "-no-color",
            "-auto-approve",
            f"-var-file={self.tfvars_path}",
        ]
        args += [f"-target={t}" for t in targets]
        self.terraform(*args, step="terraform destroy", mutating=True, stream=True)


def state_bucket_owner(runner: Runner, bucket: str) -> str | None:
    """The number of the project that owns the bucket ("" if not shown), None if it does not
    exist. (`gcloud storage buckets describe` prints `project_number`.)"""
    r = runner.run(
        ["gcloud", "storage", "buckets", "describe", f"gs://{bucket}", "--format=json"],
        step="looking for the state bucket",
        ok_codes=(0, 1),
    )
    if r.returncode != 0:
        return None
    return str((r.json() or {}).get("project_number", ""))


def foreign_bucket_message(bucket: str, owner: str, project: str, number: str) -> str:
    return (
        f"state bucket gs://{bucket} belongs to another project (number {owner}), not "
        f"{project} ({number}): pick another state_bucket name in the vars file (names are "
        "global), so Terraform's state is never written to someone else's bucket"
    )


def terraform_version(runner: Runner) -> tuple[int, int, int]:
    r = runner.run(["terraform", "version", "-json"], step="checking Terraform's version")
    raw = (r.json() or {}).get("terraform_version", "0.0.0")
    major, minor, patch = ([int(p) for p in raw.split("-")[0].split(".")] + [0, 0, 0])[:3]
    return major, minor, patch
