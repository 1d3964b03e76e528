"""The `deployer` command: a thin layer that parses, calls the library and prints.

Every library error derives from `deployer.errors.DeployerError`; `DeployerGroup` turns them into
one `deployer: error: …` line and exit code 1, in this one place. Modules beyond the client's
(the server stack, the owner's tools) are imported inside the commands that need them, so
`pip install '.[client]'` runs `deployer token` and `deployer env` without them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from deployer import __version__
from deployer import local as local_server
from deployer.errors import DeployerError

FULL_INSTALL = "pip install '.[server]' in this repository (or `make install`)"


class UserError(click.ClickException):
    """One line on stderr, `deployer: error: …`, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"deployer: error: {self.format_message()}", err=True)


class DeployerGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeployerError as e:
            raise UserError(str(e)) from None
        except ModuleNotFoundError as e:
            raise UserError(
                f"this command needs {e.name}, which the client-only install leaves out: "
                f"{FULL_INSTALL}"
            ) from None


@click.group(cls=DeployerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deployer")
def cli() -> None:
    """Private MLflow on Google Cloud in one command, and the same server on one machine.

    \b
    Try it here:      deployer local
    Deploy to GCP:    make one-click-mlflow   (see README.md)
    """


@cli.command()
@click.option(
    "--host",
    default=local_server.DEFAULT_HOST,
    show_default=True,
    help="Interface to listen on. 0.0.0.0 serves a team from this machine; "
    "basic auth stays on either way.",
)
@click.option(
    "--port",
    default=local_server.DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--data-dir",
    default=str(local_server.DEFAULT_DATA_DIR),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for the database, artifacts, users and generated secrets. "
    "Reuse it to keep your runs.",
)
@click.option(
    "--allowed-hosts",
    default=None,
    metavar="HOSTS",
    help="Comma-separated host names clients use to reach this machine "
    "(needed with --host 0.0.0.0 when they use a name, not an IP).",
)
def local(host: str, port: int, data_dir: Path, allowed_hosts: str | None) -> None:
    """Run the real MLflow server on this machine (SQLite + a folder), private by default.

    The first start generates an admin password and a session key, keeps them in
    DATA_DIR/secrets (mode 0600) and shows the password once. Ctrl-C stops the
    server cleanly; start it again with the same --data-dir to find your runs.
    """
    sys.exit(local_server.run(data_dir, host, port, allowed_hosts, echo=click.echo))


@cli.command()
@click.option(
    "--audience",
    default=None,
    metavar="URL",
    help="The service URL (or IAP audience). Default: MLFLOW_IAP_AUDIENCE, else "
    "MLFLOW_TRACKING_URI.",
)
@click.option(
    "--impersonate",
    default=None,
    metavar="SA_EMAIL",
    help="The client service account to sign as. Default: "
    "MLFLOW_IAP_SERVICE_ACCOUNT, else your own service account.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["raw", "header", "env"]),
    default="raw",
    show_default=True,
    help="raw token, an HTTP header line, or an export line.",
)
@click.option(
    "--lifetime",
    type=click.IntRange(60, 3600),
    default=3600,
    show_default=True,
    help="Seconds the token stays valid.",
)
@click.option(
    "--env",
    "environment",
    default=None,
    metavar="NAME",
    help="Read URL and client account from this deployed environment's outputs.",
)
def token(
    audience: str | None, impersonate: str | None, fmt: str, lifetime: int, environment: str | None
) -> None:
    """Print a token IAP accepts (stdout only; messages go to stderr).

    \b
    curl -H "$(deployer token --format header)" "$MLFLOW_TRACKING_URI/version"

    Long runs should use the MLflow plugin instead (MLFLOW_TRACKING_AUTH=deployer-iap), which
    refreshes the token before it expires; `deployer env` prints the lines.
    """
    from deployer import client_env

    env = client_env.token_environment(os.environ, audience, impersonate, environment)
    minted, aud = client_env.mint_token(env, lifetime)
    click.echo(f"token for {minted.service_account} from {minted.source}, audience {aud}", err=True)
    if fmt == "header":
        click.echo(f"Authorization: Bearer {minted.token}")
    elif fmt == "env":
        click.echo(f"export MLFLOW_TRACKING_TOKEN={minted.token}")
    else:
        click.echo(minted.token)


@cli.command()
@click.option(
    "--client-id",
    envvar="MLFLOW_IAP_OAUTH_CLIENT_ID",
    required=True,
    metavar="ID",
    help="The desktop OAuth client the project owner allowlisted in IAP "
    "(env MLFLOW_IAP_OAUTH_CLIENT_ID).",
)
@click.option(
    "--client-secret",
    envvar="MLFLOW_IAP_OAUTH_CLIENT_SECRET",
    required=True,
    metavar="SECRET",
    help="Its secret (env MLFLOW_IAP_OAUTH_CLIENT_SECRET; not confidential for desktop clients).",
)
@click.option(
    "--no-browser", is_flag=True, help="Print the sign-in URL instead of opening a browser."
)
def login(client_id: str, client_secret: str, no_browser: bool) -> None:
    """Sign in with your Google account so runs from code carry your own email.

    Keeps a refresh token in your config folder (mode 0600); the MLflow plugin
    (MLFLOW_TRACKING_AUTH=deployer-iap) then mints your ID tokens from it. Without it,
    code runs as the shared client service account.
    """
    from deployer import user_login

    # A TokenError is a DeployerError: DeployerGroup prints it as one line.
    stored = user_login.login(client_id, client_secret, open_browser=not no_browser)
    path = user_login.login_path()
    user_login.save(stored, path)
    click.echo(f"signed in as {stored.email}; kept in {path} (mode 0600)")


@cli.command("env")
@click.option("--url", default=None, metavar="URL", help="The deployed service URL.")
@click.option(
    "--service-account",
    default=None,
    metavar="SA_EMAIL",
    help="The client service account (mlflow-log-pusher@PROJECT.iam…).",
)
@click.option(
    "--local", "local_mode", is_flag=True, help="Print the lines for `deployer local` instead."
)
@click.option(
    "--data-dir",
    default=str(local_server.DEFAULT_DATA_DIR),
    show_default=True,
    type=click.Path(path_type=Path),
    help="With --local: its data folder.",
)
@click.option(
    "--port",
    default=local_server.DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="With --local: its port.",
)
@click.option(
    "--env",
    "environment",
    default=None,
    metavar="NAME",
    help="Without --url: read them from this deployed environment's outputs.",
)
def env_cmd(
    url: str | None,
    service_account: str | None,
    local_mode: bool,
    data_dir: Path,
    port: int,
    environment: str | None,
) -> None:
    """Print the `export` lines that point MLflow clients at the server.

    \b
    eval "$(deployer env --url https://mlflow-…run.app --service-account mlflow-log-pusher@…)"
    eval "$(deployer env --local)"
    """
    from deployer import client_env

    if local_mode:
        lines = client_env.local_exports(data_dir, port)
    else:
        lines = client_env.env_lines(url, service_account, environment)
    click.echo("\n".join(lines))
    if client_env.login_offered(lines):
        click.echo(client_env.LOGIN_HINT, err=True)


# ----- the owner's commands ---------------------------------------------------------------

VARS_OPTION = click.option(
    "--vars",
    "vars_path",
    default="vars",
    show_default=True,
    type=click.Path(path_type=Path),
    help="The vars file of the environment (vars.staging, vars.prod, ... each their own state).",
)
DRY_RUN_OPTION = click.option(
    "--dry-run", is_flag=True, help="Print the commands that would change anything; run none."
)


def _settings(vars_path: Path):
    """The checked settings; every problem printed, then one line saying nothing changed."""
    from deployer import vars as vars_file

    settings = vars_file.load(vars_path)
    for warning in settings.warnings:
        click.echo("warning: " + warning.render(vars_path), err=True)
    if settings.problems:
        for problem in settings.problems:
            click.echo(problem.render(vars_path), err=True)
        raise vars_file.VarsError(
            f"{len(settings.problems)} problem(s) in {vars_path}: fix them and run again "
            "(nothing was changed)"
        )
    return settings


def _runner(dry_run: bool):
    from deployer.runner import Runner

    return Runner(dry_run=dry_run, echo=click.echo)


def _ask(values: dict[str, Any], name: str, help_text: str) -> None:
    """Ask for one setting until the answer passes its check."""
    from deployer import vars as vars_file

    while True:
        default = vars_file.shown_default(values[name])
        raw = click.prompt(
            f"{name} ({help_text})", default=default, show_default=default not in (None, "")
        )
        value, problem = vars_file.check_answer(name, str(raw))
        if problem is None:
            values[name] = value
            return
        click.echo(f"  {problem}", err=True)


@cli.command("init")
@click.option(
    "--vars",
    "vars_path",
    default="vars",
    show_default=True,
    type=click.Path(path_type=Path),
    help="The vars file to write.",
)
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting, repeatable (web_app_users takes a comma-separated list).",
)
@click.option("--non-interactive", is_flag=True, help="Ask nothing: flags and defaults only.")
@click.option("--force", is_flag=True, help="Overwrite an existing vars file.")
def init_cmd(vars_path: Path, pairs: tuple[str, ...], non_interactive: bool, force: bool) -> None:
    """Write a vars file, asking for each important setting (with defaults)."""
    from deployer import vars as vars_file

    vars_file.refuse_overwrite(vars_path, force)
    given = vars_file.parse_pairs(pairs)
    values = vars_file.initial_values(vars_path, given)
    if not non_interactive:
        for f in vars_file.FIELDS:
            if f.name not in given and (f.prompt or f.required):
                _ask(values, f.name, f.help)
    settings = vars_file.write_new(vars_path, values, force=True)
    if settings.problems:
        for problem in settings.problems:
            click.echo(problem.render(vars_path), err=True)
        raise vars_file.VarsError(
            f"{vars_path} not written: {len(settings.problems)} problem(s) above; give each "
            "with --set KEY=VALUE (or answer the prompts: drop --non-interactive)"
        )
    for warning in settings.warnings:
        click.echo("warning: " + warning.render(vars_path), err=True)
    click.echo(f"Wrote {vars_path}. Next: deployer check --vars {vars_path}")


@cli.command("validate")
@VARS_OPTION
def validate_cmd(vars_path: Path) -> None:
    """Check the vars file against every rule; list all problems at once."""
    settings = _settings(vars_path)
    click.echo(
        f"{vars_path}: ok (environment {settings.environment}, project "
        f"{settings['project_id']}, region {settings['region']})"
    )


@cli.command("check")
@VARS_OPTION
def check_cmd(vars_path: Path) -> None:
    """Preflight: tools, credentials, project, billing, permissions, APIs, the state bucket's
    owner, and members IAP would refuse (outside the project's organisation)."""
    from deployer import preflight

    settings = _settings(vars_path)
    results = preflight.run_checks(settings, _runner(False))
    for result in results:
        click.echo(result.line())
    failed = [r for r in results if not r.ok]
    if failed:
        raise UserError(f"{len(failed)} check(s) failed: fix them, then run `deployer check` again")
    click.echo("Ready to deploy: deployer deploy --vars " + str(vars_path))


@cli.command("build")
@VARS_OPTION
@DRY_RUN_OPTION
@click.option(
    "--local-docker", is_flag=True, help="Build with local Docker instead of Cloud Build."
)
def build_cmd(vars_path: Path, dry_run: bool, local_docker: bool) -> None:
    """Build the server image (tagged by content) and push it to the stack's registry."""
    from deployer import image_build

    settings = _settings(vars_path)
    image = image_build.image_for(settings)
    image_build.build(
        _runner(dry_run), image, settings["project_id"], settings["region"], local_docker
    )
    click.echo(image)


@cli.command("apply")
@VARS_OPTION
@DRY_RUN_OPTION
@click.option("--yes", is_flag=True, help="Apply without asking after the plan.")
def apply_cmd(vars_path: Path, dry_run: bool, yes: bool) -> None:
    """Render tfvars, terraform init (GCS state), plan, show the summary, apply."""
    from deployer import access, deploy

    settings = _settings(vars_path)
    runner = _runner(dry_run)
    access.require_access(settings, runner, "apply", dry_run)

    def confirm(summary) -> bool:
        return yes or dry_run or click.confirm(f"Apply ({summary.describe()})?", default=False)

    deploy.apply_command(settings, runner, confirm)


@cli.command("deploy")
@VARS_OPTION
@DRY_RUN_OPTION
@click.option(
    "--local-docker", is_flag=True, help="Build with local Docker instead of Cloud Build."
)
@click.option(
    "--health-timeout",
    default=600,
    show_default=True,
    type=click.IntRange(5, 3600),
    help="Seconds to wait for /health through IAP.",
)
def deploy_cmd(vars_path: Path, dry_run: bool, local_docker: bool, health_timeout: int) -> None:
    """Build, apply, migrate, wait for health: the whole deployment, resumable."""
    from deployer import access, client_env, deploy

    settings = _settings(vars_path)
    runner = _runner(dry_run)
    access.require_access(settings, runner, "deploy", dry_run)
    done = deploy.deploy(settings, runner, local_docker, health_timeout)
    if done is None:
        return
    click.echo("")
    click.echo(f"MLflow is up at {done.url} (private: only web_app_users get through IAP).")
    click.echo("Researchers: gcloud auth application-default login, then")
    lines = done.researcher_lines()
    for line in lines:
        click.echo(f"  {line}")
    if client_env.login_offered(lines):
        click.echo(f"  {client_env.LOGIN_HINT}")


@cli.command("status")
@VARS_OPTION
def status_cmd(vars_path: Path) -> None:
    """What is deployed: URL, image, revision, health."""
    from deployer import access, deploy

    settings = _settings(vars_path)
    runner = _runner(False)
    access.require_access(settings, runner, "status", dry_run=False)
    for line in deploy.status(settings, runner):
        click.echo(line)


@cli.command("destroy")
@VARS_OPTION
@DRY_RUN_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for the project ID to be typed back.")
@click.option(
    "--delete-data",
    is_flag=True,
    help="Also delete the database and the artifact bucket (off by default).",
)
def destroy_cmd(vars_path: Path, dry_run: bool, yes: bool, delete_data: bool) -> None:
    """Take the stack down; the database and artifacts are kept unless --delete-data."""
    from deployer import access, deploy

    settings = _settings(vars_path)
    runner = _runner(dry_run)
    access.require_access(settings, runner, "destroy", dry_run, delete_data)
    click.echo(deploy.destroy_summary(settings, delete_data))
    if not (yes or dry_run):
        typed = click.prompt(
            f"Type the project ID ({settings['project_id']}) to confirm",
            default="",
            show_default=False,
        )
        if typed.strip() != settings["project_id"]:
            raise deploy.DeployError("not confirmed: nothing was destroyed")
    deploy.destroy(settings, runner, delete_data)


@cli.command("cost")
@VARS_OPTION
@click.option(
    "--requests",
    "requests_per_month",
    default=200_000,
    show_default=True,
    type=click.IntRange(0),
    help="Requests a month for the 'in use' column.",
)
@click.option("--seconds-per-request", default=0.1, show_default=True, type=float)
@click.option("--artifacts-gb", default=50.0, show_default=True, type=float)
def cost_cmd(
    vars_path: Path, requests_per_month: int, seconds_per_request: float, artifacts_gb: float
) -> None:
    """Estimated monthly cost of these settings, idle and in use, line by line."""
    from deployer import cost

    settings = _settings(vars_path)
    usage = cost.Usage(requests_per_month, seconds_per_request, artifacts_gb)
    for line in cost.report(settings.values, usage):
        click.echo(line)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
