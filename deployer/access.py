"""Before a command touches the project: can we see it at all?

Dry runs say first what they could not check (not logged in, project unreachable) and then what
they would do; `status` and `destroy` stop at once with the login command, instead of failing
inside `terraform init` on missing credentials.
"""

from __future__ import annotations

from deployer import image_build, preflight
from deployer.deploy import DeployError
from deployer.runner import Runner
from deployer.vars import Settings


class NoAccess(DeployError):
    """The project cannot be reached with the credentials on this machine."""


def planned_steps(settings: Settings, command: str, delete_data: bool = False) -> list[str]:
    """What `command` would do, described without reading the project."""
    bucket = f"gs://{settings['state_bucket']}"
    state = f"{bucket}/mlflow/{settings.environment}"
    image = image_build.image_for(settings)
    stack = f"terraform init, plan and apply of the whole stack (state {state})"
    if command == "destroy":
        what = "everything, database and bucket included" if delete_data else "the service"
        return [f"terraform init (state {state})", f"terraform destroy of {what}"]
    steps = [f"create the state bucket {bucket} (versioned) unless it exists"]
    if command == "deploy":
        steps += [
            "terraform apply of the APIs and the registry, then IAP's service agent",
            f"build {image} with Cloud Build (skipped when it exists)",
            f"{stack}; the schema migration job runs inside it, before the service rolls out",
            "wait for /health through IAP",
        ]
    else:
        steps += [f"{stack} (or only the APIs and the registry while {image} is not built)"]
    return steps


def require_access(
    settings: Settings, runner: Runner, command: str, dry_run: bool, delete_data: bool = False
) -> None:
    """Raise NoAccess naming the fix when the project cannot be reached; a dry run first lists
    what it could not check and what it would have done."""
    problems = preflight.access_problems(settings, runner)
    if not problems:
        return
    problem = problems[0]
    if dry_run:
        runner.echo(f"[dry-run] could not check: {problem.detail} ({problem.fix})")
        runner.echo(f"[dry-run] `deployer {command}` would:")
        for step in planned_steps(settings, command, delete_data):
            runner.echo(f"[dry-run]   {step}")
        raise NoAccess(
            f"dry run incomplete: {problem.detail}; {problem.fix}, then run it again "
            "(nothing was changed)"
        )
    raise NoAccess(f"{problem.detail}: {problem.fix}, then run `deployer {command}` again")
