"""The one server entrypoint: the container's CMD and what `deployer local` runs.

    mlflow-server-entrypoint [serve]   check the schema, then exec `mlflow server`
    mlflow-server-entrypoint migrate   create or upgrade the schema, then exit

Settings come only from the environment (see `settings.py`). Nothing is started until every
setting has been read and checked; a bad one ends the process with one line naming it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence

from deployer.server.schema import SchemaNotReady, require_current_schema, upgrade_schema
from deployer.server.settings import AuthMode, ServerSettings, SettingsError, load_settings

# Server-side defaults we always set (see design notes): MLflow's background job runner starts
# extra processes (~2 GiB) that a scale-to-zero service does not want; telemetry stays off.
FIXED_SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}

# Cloud Run sends SIGTERM and waits 10 s before SIGKILL: let in-flight requests finish in 8.
GRACEFUL_TIMEOUT_SECONDS = 8
# Large proxied uploads stream through a worker; do not kill a worker that is busy with one.
WORKER_TIMEOUT_SECONDS = 900

APP_NAMES = {AuthMode.IAP: "iap", AuthMode.BASIC: "basic-auth", AuthMode.NONE: None}


def gunicorn_options(settings: ServerSettings) -> str:
    """Threads per worker, graceful shutdown and keep-alive for the gunicorn workers.

    Behind IAP the app is loaded once before the workers fork (--preload): faster start, and the
    workers share its memory copy-on-write. Not with basic auth, whose app opens its user
    database while loading: a connection must not be shared across forked workers.
    """
    preload = ["--preload"] if settings.auth_mode is AuthMode.IAP else []
    return " ".join(
        [
            *preload,
            "--worker-class gthread",
            f"--threads {settings.threads}",
            f"--graceful-timeout {GRACEFUL_TIMEOUT_SECONDS}",
            f"--timeout {WORKER_TIMEOUT_SECONDS}",
            "--keep-alive 75",
            "--access-logfile -",
            # gunicorn 26 opens a control socket under $HOME by default: one per host would
            # clash between servers and fail on a read-only home in the container.
            "--no-control-socket",
        ]
    )


def server_command(settings: ServerSettings) -> list[str]:
    """The `mlflow server` argv. Secrets (the database URI) go through the environment."""
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--serve-artifacts",
        "--artifacts-destination",
        settings.artifacts_destination,
        "--gunicorn-opts",
        gunicorn_options(settings),
    ]
    app_name = APP_NAMES[settings.auth_mode]
    if app_name:
        cmd += ["--app-name", app_name]
    return cmd


def server_environment(settings: ServerSettings, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(FIXED_SERVER_ENV)
    env["MLFLOW_BACKEND_STORE_URI"] = settings.backend_store_uri
    # Host-header (DNS rebinding) and CORS checks of MLflow's Flask app. `mlflow server` only
    # takes them as flags under uvicorn; under gunicorn the app reads them from here.
    if settings.allowed_hosts:
        env["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(settings.allowed_hosts)
    if settings.cors_allowed_origins:
        env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] = ",".join(settings.cors_allowed_origins)
    if settings.pool is not None:
        env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = str(settings.pool.pool_size)
        env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] = str(settings.pool.max_overflow)
    # Recycle connections before Cloud SQL's proxy or a NAT drops them silently.
    env.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE", "1800")
    if settings.artifacts_destination.startswith("gs://"):
        # Cloud Run caps request bodies at 32 MiB: large artifacts go up in parts through the
        # server, with URLs signed through IAM signBlob (see gcs_signing.py).
        env.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    return env


def _fail(message: str) -> int:
    print(f"mlflow-server-entrypoint: error: {message}", file=sys.stderr, flush=True)
    return 2


def migrate(env: Mapping[str, str]) -> int:
    try:
        settings = load_settings(env)
    except SettingsError as e:
        return _fail(str(e))
    try:
        before, after = upgrade_schema(settings.backend_store_uri)
    except Exception as e:  # the database is unreachable or refuses us: say which, exit non-zero
        return _fail(f"migration failed: {type(e).__name__}: {_first_line(e)}")
    if before == after:
        print(f"mlflow-server-entrypoint: schema already at {after}; nothing to do", flush=True)
    else:
        print(
            f"mlflow-server-entrypoint: schema migrated {before or 'empty'} -> {after}", flush=True
        )
    return 0


def prepare_serve(env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Validate everything `serve` needs; return the argv and environment to exec.

    Raises SettingsError or SchemaNotReady; never starts anything.
    """
    settings = load_settings(env)
    require_current_schema(settings.backend_store_uri)
    return server_command(settings), server_environment(settings, env)


def serve(env: Mapping[str, str]) -> int:
    try:
        argv, child_env = prepare_serve(env)
    except (SettingsError, SchemaNotReady) as e:
        return _fail(str(e))
    except Exception as e:  # database unreachable while checking the schema
        return _fail(f"cannot check the tracking database: {type(e).__name__}: {_first_line(e)}")
    print("mlflow-server-entrypoint: starting " + shlex.join(argv[2:]), flush=True)
    os.execve(argv[0], argv, child_env)
    return 0  # pragma: no cover - execve does not return


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or repr(e)
    return text.splitlines()[0]


USAGE = "usage: mlflow-server-entrypoint [serve|migrate]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    mode = args[0] if args else "serve"
    if mode in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(args) > 1 or mode not in ("serve", "migrate"):
        print(USAGE, file=sys.stderr)
        return 2
    if mode == "migrate":
        return migrate(os.environ)
    return serve(os.environ)


if __name__ == "__main__":
    sys.exit(main())
