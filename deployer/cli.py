"""The `deployer` command: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from deployer import __version__
from deployer import local as local_server


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"deployer: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    try:
        code = local_server.run(data_dir, host, port, allowed_hosts, echo=click.echo)
    except local_server.LocalError as e:
        _fail(str(e))
    sys.exit(code)


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
def token(audience: str | None, impersonate: str | None, fmt: str, lifetime: int) -> None:
    """Print a token IAP accepts (stdout only; messages go to stderr).

    \b
    curl -H "$(deployer token --format header)" "$MLFLOW_TRACKING_URI/version"

    Long runs should use the MLflow plugin instead (MLFLOW_TRACKING_AUTH=deployer-iap), which
    refreshes the token before it expires; `deployer env` prints the lines.
    """
    from deployer import mlflow_auth, tokens

    env = dict(os.environ)
    if audience:
        env[mlflow_auth.ENV_AUDIENCE] = tokens.audience_for(audience)
    if impersonate:
        env[mlflow_auth.ENV_SERVICE_ACCOUNT] = impersonate
    try:
        if not env.get(mlflow_auth.ENV_AUDIENCE) and not env.get("MLFLOW_TRACKING_URI"):
            raise tokens.TokenError(
                "no server to mint a token for: pass --audience https://…run.app or set "
                "MLFLOW_TRACKING_URI (`deployer env` prints it)"
            )
        aud, sa, _ = mlflow_auth.settings_from_env(env)
        minted = tokens.TokenMinter(aud, sa, lifetime).mint()
    except tokens.TokenError as e:
        _fail(str(e))
    click.echo(f"token for {minted.service_account} from {minted.source}, audience {aud}", err=True)
    if fmt == "header":
        click.echo(f"Authorization: Bearer {minted.token}")
    elif fmt == "env":
        click.echo(f"export MLFLOW_TRACKING_TOKEN={minted.token}")
    else:
        click.echo(minted.token)


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
def env_cmd(
    url: str | None, service_account: str | None, local_mode: bool, data_dir: Path, port: int
) -> None:
    """Print the `export` lines that point MLflow clients at the server.

    \b
    eval "$(deployer env --url https://mlflow-…run.app --service-account mlflow-log-pusher@…)"
    eval "$(deployer env --local)"
    """
    from deployer import client_env

    try:
        if local_mode:
            lines = client_env.local_exports(data_dir, port)
        else:
            lines = client_env.cloud_exports(url, service_account)
    except client_env.ClientEnvError as e:
        _fail(str(e))
    click.echo("\n".join(lines))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
