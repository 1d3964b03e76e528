"""The owner's commands: apply, deploy, status, destroy, as a library the CLI calls.

deploy = state bucket -> APIs, registry and IAP's service agent -> image (built only if its
content changed) -> the whole stack, in which Terraform runs the schema migration job before the
service rolls out -> /health through IAP with a minted token -> the URL and the researchers'
lines. Every step is idempotent, so a re-run after any failure resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from deployer import client_env, db_sleep, image_build
from deployer.errors import DeployerError
from deployer.runner import Runner
from deployer.stack import RESUME, PlanSummary, Stack
from deployer.tokens import TokenError, TokenMinter
from deployer.vars import Settings

BOOTSTRAP_TARGETS = ("module.apis", "module.registry")
KEEP_DATA_TARGETS = ("module.service", "module.access", "module.registry")
# `--delete-data` destroys all but the network first, so the network's VPC peering can be
# removed before the network itself goes (see remove_service_peering).
DATA_TARGETS = ("module.database", "module.artifacts")
ALL_BUT_NETWORK_TARGETS = (*KEEP_DATA_TARGETS, *DATA_TARGETS)
# The peering Service Networking creates for private services access (its fixed name).
SERVICE_PEERING = "servicenetworking-googleapis-com"


class DeployError(DeployerError, RuntimeError):
    pass


def apply(
    stack: Stack,
    image: str,
    targets: tuple[str, ...] = (),
    overrides: dict[str, Any] | None = None,
    confirm: Callable[[PlanSummary], bool] | None = None,
) -> PlanSummary:
    """render tfvars -> init -> plan -> (confirm) -> apply; no changes means nothing is applied.
    The bootstrap apply (APIs and registry) is followed by IAP's service agent, which every
    later full apply needs (`deployer deploy` and `deployer apply` both pass through it)."""
    summary = _plan_and_apply(stack, image, targets, overrides, confirm)
    if targets == BOOTSTRAP_TARGETS:
        ensure_iap_service_agent(stack)
    return summary


def _plan_and_apply(
    stack: Stack,
    image: str,
    targets: tuple[str, ...],
    overrides: dict[str, Any] | None,
    confirm: Callable[[PlanSummary], bool] | None,
) -> PlanSummary:
    echo = stack.runner.echo
    stack.render_tfvars(image, overrides)
    if stack.runner.dry_run and not stack.state_bucket_exists():
        stack.ensure_state_bucket()
        echo(
            f"[dry-run] would run: terraform init, plan and apply in {stack.tf_dir} "
            f"(state gs://{stack.settings['state_bucket']}/{stack.state_prefix})"
        )
        return PlanSummary(True)
    stack.ensure_state_bucket()
    stack.init()
    if not targets:
        # A sleeping database refuses the apply's work on it: wake it first (db_sleep.py).
        db_sleep.wake_for_apply(stack.runner, stack.outputs())
    what = f" ({', '.join(targets)})" if targets else ""
    echo(f"Planning{what} ...")
    summary = stack.plan(targets)
    echo(f"Plan: {summary.describe()}")
    if not summary.changes:
        return summary
    if confirm is not None and not confirm(summary):
        raise DeployError("stopped before applying: nothing was changed")
    if stack.runner.dry_run:
        stack.apply_plan()  # prints the command
        return summary
    echo("Applying (Cloud SQL takes 5-10 minutes the first time) ...")
    stack.apply_plan()
    return summary


def apply_command(
    settings: Settings, runner: Runner, confirm: Callable[[PlanSummary], bool] | None = None
) -> dict[str, Any] | None:
    """`deployer apply`: the whole stack, or only the registry while the image is not built
    (Cloud Run cannot start without it). Returns the outputs after a real apply."""
    stack = Stack(settings, runner)
    image = image_build.image_for(settings)
    if not image_build.image_exists(runner, image, stack.project):
        apply(stack, image, BOOTSTRAP_TARGETS, confirm=confirm)
        if runner.dry_run:
            runner.echo(
                f"[dry-run] {image} is not built yet: apply would stop after the registry; "
                "`deployer build` builds it (`deployer deploy` does both)"
            )
            return None
        raise DeployError(
            f"the server image {image} is not built yet; the registry is ready: run "
            "`deployer build`, then `deployer apply` again (`deployer deploy` does all of it)"
        )
    apply(stack, image, confirm=confirm)
    return None if runner.dry_run else stack.outputs()


def ensure_iap_service_agent(stack: Stack) -> None:
    """Create IAP's service agent, which Google otherwise makes lazily: the stack grants it
    roles/run.invoker, and that grant fails while the agent does not exist yet. The command
    returns the existing agent when there is one. (Terraform's google_project_service_identity
    is google-beta only; this stack uses the google provider alone.)"""
    stack.runner.echo("Making sure IAP's service agent exists ...")
    stack.runner.run(
        [
            "gcloud",
            "beta",
            "services",
            "identity",
            "create",
            "--service=iap.googleapis.com",
            "--project",
            stack.project,
            "--format=json",
        ],
        step="creating IAP's service agent",
        mutating=True,
        fix="Install gcloud's beta component (gcloud components install beta), then run the "
        "same command again",
    )


def remove_service_peering(stack: Stack, network: str) -> None:
    """Remove the VPC peering private services access made in our network. Terraform abandons
    the connection (Cloud SQL keeps resources behind it for days after the instance is gone, so
    deleting it fails), and a network with a peering cannot be deleted."""
    stack.runner.echo(f"Removing the private services peering of network {network} ...")
    r = stack.runner.run(
        [
            "gcloud",
            "compute",
            "networks",
            "peerings",
            "delete",
            SERVICE_PEERING,
            "--network",
            network,
            "--project",
            stack.project,
            "--quiet",
        ],
        step="removing the private services peering",
        mutating=True,
        ok_codes=(0, 1),
    )
    if r.returncode != 0:
        stack.runner.echo("  no such peering (already removed): nothing to do.")


def wait_for_health(
    outputs: dict[str, Any],
    timeout: float,
    echo: Callable[[str], None],
    get: Callable[..., Any] = requests.get,
    interval: float = 5.0,
) -> float:
    """Poll the service's /health through IAP with a token minted as the client account, as
    the stack's outputs name them, until 200; return seconds waited."""
    url = outputs["service_url"]
    try:
        minter = TokenMinter(outputs["client_audience"], outputs["client_service_account"])
        token = minter.mint().token
    except TokenError as e:
        raise DeployError(f"cannot mint a token to check the service: {e}") from None
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        try:
            r = get(f"{url}/health", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if r.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = type(e).__name__
        echo(f"  waiting for {url}/health ({last}, {time.monotonic() - started:.0f} s) ...")
        time.sleep(interval)
    raise DeployError(
        f"{url}/health did not answer 200 within {timeout:.0f} s (last: {last}). See the "
        f"service's logs: gcloud run services logs read {outputs['service_name']} "
        f"--region {outputs['region']} --project {outputs['project_id']}. {RESUME}"
    )


@dataclass(frozen=True)
class Deployed:
    url: str
    client_service_account: str
    outputs: dict[str, Any]

    def researcher_lines(self) -> list[str]:
        return client_env.cloud_exports(
            self.url, self.client_service_account, client_env.oauth_client_of(self.outputs)
        )


def deploy(
    settings: Settings,
    runner: Runner,
    local_docker: bool = False,
    health_timeout: float = 600.0,
    stack: Stack | None = None,
) -> Deployed | None:
    stack = stack or Stack(settings, runner)
    echo = runner.echo
    image = image_build.image_for(settings)
    echo(f"== 1/4 APIs, the image registry and IAP's service agent ({settings.environment})")
    apply(stack, image, targets=BOOTSTRAP_TARGETS)  # then IAP's service agent
    echo(f"== 2/4 image {image}")
    image_build.build(runner, image, stack.project, stack.region, local_docker)
    echo("== 3/4 the stack (the schema migration runs before the new revision)")
    apply(stack, image)
    if runner.dry_run:
        echo("[dry-run] would then wait for /health")
        return None
    outputs = stack.outputs()
    try:
        url = outputs["service_url"]
        client = outputs["client_service_account"]
    except KeyError as e:
        raise DeployError(f"terraform output lacks {e}: {RESUME}") from None
    echo("== 4/4 waiting for the service through IAP")
    waited = wait_for_health(outputs, health_timeout, echo)
    echo(f"Healthy after {waited:.0f} s.")
    return Deployed(url, client, outputs)


def status(settings: Settings, runner: Runner, check_health: bool = True) -> list[str]:
    stack = Stack(settings, runner)
    stack.init()
    outputs = stack.outputs()
    if not outputs:
        return [f"{settings.environment}: nothing deployed yet (run `deployer deploy`)"]
    lines = [
        f"environment  {settings.environment} (project {stack.project}, region {stack.region})",
        f"url          {outputs.get('service_url')}",
        f"client       {outputs.get('client_service_account')}",
        f"bucket       {outputs.get('artifacts_bucket')}",
        f"database     {outputs.get('cloud_sql_connection_name')}",
    ]
    where = db_sleep.instance_of(outputs)
    if where is not None:
        lines.append(f"db state     {db_sleep.state_line(db_sleep.describe(runner, *where))}")
    if outputs.get("workload_identity_provider"):
        lines.append(f"github wif   {outputs['workload_identity_provider']}")
    r = runner.run(
        [
            "gcloud",
            "run",
            "services",
            "describe",
            outputs.get("service_name", "mlflow"),
            "--region",
            stack.region,
            "--project",
            stack.project,
            "--format=json",
        ],
        step="reading the service",
        ok_codes=(0, 1),
    )
    if r.returncode == 0:
        doc = r.json() or {}
        containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ready = [c for c in doc.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
        lines.append(f"image        {containers[0].get('image') if containers else '?'}")
        lines.append(
            f"revision     {doc.get('status', {}).get('latestReadyRevisionName', '?')}"
            f" (ready: {ready[0].get('status') if ready else '?'})"
        )
    else:
        lines.append("service      not found")
    if check_health and r.returncode == 0:
        try:
            waited = wait_for_health(outputs, 20, lambda _: None)
            lines.append(f"health       ok ({waited:.1f} s)")
        except DeployError as e:
            lines.append(f"health       FAILING: {e}")
    return lines


def destroy_summary(settings: Settings, delete_data: bool) -> str:
    project = settings["project_id"]
    if delete_data:
        return (
            f"This deletes EVERYTHING of environment {settings.environment} in project "
            f"{project}: the MLflow service, the database with every run, metric and "
            "registered model, and the artifact bucket with every artifact. "
            "It cannot be undone."
        )
    return (
        f"This deletes the MLflow service, its access settings and the image registry of "
        f"environment {settings.environment} in project {project}. Kept: the database "
        "(runs, metrics, model registry), the artifact bucket and the network they use; "
        "`deployer deploy` brings the service back on them. Add --delete-data to delete "
        "those too."
    )


def destroy(settings: Settings, runner: Runner, delete_data: bool) -> None:
    stack = Stack(settings, runner)
    image = image_build.image_for(settings)
    if delete_data:
        _destroy_everything(stack, image)
    else:
        # The service and job carry no deletion protection (they hold no data); the database
        # and the bucket keep theirs and are not targeted.
        stack.render_tfvars(image)
        stack.init()
        stack.destroy(KEEP_DATA_TARGETS)
    if stack.outputs_path.exists() and not runner.dry_run:
        stack.outputs_path.unlink()
    runner.echo(
        f"Destroyed. Terraform's state stays in gs://{settings['state_bucket']} "
        f"({stack.state_prefix})."
    )


def _destroy_everything(stack: Stack, image: str) -> None:
    """Lift the database's protection, destroy all but the network, remove the network's
    private services peering (only in a network the stack created), then destroy the rest."""
    runner = stack.runner
    runner.echo("Lifting deletion protection on the database and the bucket ...")
    # apply() renders the tfvars with protection off; the destroys below read the same file.
    # Targeted at the data alone: from a checkout newer than the deployment, a whole apply
    # would first roll the service and migration job out to an image that was never built.
    apply(
        stack,
        image,
        targets=DATA_TARGETS,
        overrides={"deletion_protection": False, "artifacts_force_destroy": True},
    )
    network = None
    if not stack.settings["network_name"] and not runner.dry_run:
        network = (stack.outputs().get("resource_names") or {}).get("network")
    stack.destroy(ALL_BUT_NETWORK_TARGETS)
    if network:
        remove_service_peering(stack, network)
    stack.destroy()
