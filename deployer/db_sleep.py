"""The deployer's side of the sleeping database: say whether it sleeps, wake it before an apply.

A stopped Cloud SQL instance (activation policy NEVER, see terraform/modules/sleep) refuses work
on its users and databases ("instance is not running"), and the apply's migration job must
reach it; so a full apply wakes it first (`gcloud sql instances patch --activation-policy
ALWAYS`, which waits for the start), and it falls asleep again after the idle time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deployer.runner import Runner


def instance_of(outputs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(project, instance) from the stack's cloud_sql_connection_name output, if deployed."""
    parts = str(outputs.get("cloud_sql_connection_name") or "").split(":")
    return (parts[0], parts[2]) if len(parts) == 3 and all(parts) else None


def describe(runner: Runner, project: str, instance: str) -> dict[str, Any] | None:
    r = runner.run(
        ["gcloud", "sql", "instances", "describe", instance, "--project", project, "--format=json"],
        step="reading the database's state",
        ok_codes=(0, 1),
    )
    return (r.json() or None) if r.returncode == 0 else None


def state_line(doc: Mapping[str, Any] | None) -> str:
    if doc is None:
        return "unknown (gcloud sql instances describe failed)"
    policy = doc.get("settings", {}).get("activationPolicy", "?")
    if policy == "NEVER":
        return "asleep (stopped while idle; the next request wakes it, about a minute)"
    if policy == "ALWAYS" and doc.get("state") == "RUNNABLE":
        return "awake"
    return f"{doc.get('state', '?')} (activation policy {policy})"


def wake_for_apply(runner: Runner, outputs: Mapping[str, Any]) -> bool:
    """Start the deployed instance when it sleeps; True when it had to be woken."""
    where = instance_of(outputs)
    if where is None:
        return False
    project, instance = where
    doc = describe(runner, project, instance)
    if doc is None or doc.get("settings", {}).get("activationPolicy") != "NEVER":
        return False
    runner.echo(f"The database {instance} sleeps: waking it for the apply (about a minute) ...")
    runner.run(
        [
            "gcloud",
            "sql",
            "instances",
            "patch",
            instance,
            "--activation-policy=ALWAYS",
            "--project",
            project,
            "--quiet",
        ],
        step="waking the database",
        mutating=True,
        fix=f"start it yourself: gcloud sql instances patch {instance} "
        f"--activation-policy=ALWAYS --project {project}",
    )
    return True
