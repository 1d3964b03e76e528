"""The `deployer` command: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
