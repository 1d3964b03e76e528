"""The one server entrypoint: the container's CMD and what `deployer local` runs.

    mlflow-server-entrypoint [serve]   wait for the database, check the schema, exec gunicorn
    mlflow-server-entrypoint migrate   create or upgrade the schema, then exit

Settings come only from the environment (see `settings.py`). Nothing is started until every
setting has been read and checked; a bad one ends the process with one line naming it.

`serve` replaces itself with gunicorn serving MLflow's whole ASGI app (`iap_app.create_asgi_app`)
in uvicorn workers: no `mlflow server` process supervising it, every FastAPI route stock MLflow
serves, and gunicorn's listening socket sets TCP_NODELAY, so kept-alive connections do not stall
~40 ms per request as under `uvicorn --workers N`, whose shared socket lacks it (uvicorn #3149).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from deployer.server import wake
from deployer.server.schema import (
    SchemaNotReady,
    SchemaState,
    require_current_schema,
    upgrade_schema,
)
from deployer.server.settings import AuthMode, ServerSettings, SettingsError, load_settings

# Server-side defaults we always set (see design notes): MLflow's background job runner starts
# extra processes (~2 GiB) that a scale-to-zero service does not want; telemetry stays off (which
# also tells the UI to send none: MLflow's /ajax-api/3.0/mlflow/ui-telemetry answers disabled).
FIXED_SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
    # What `mlflow server` sets for its workers; our workers must never build custom scorers.
    "_MLFLOW_IN_JOB_EXECUTOR": "false",
    "_MLFLOW_SGI_NAME": "uvicorn",
    "MLFLOW_ENABLE_WORKSPACES": "false",
}

# Cloud Run sends SIGTERM and waits 10 s before SIGKILL: let in-flight requests finish in 8.
GRACEFUL_TIMEOUT_SECONDS = 8
# Large proxied uploads stream through a worker; do not kill a worker that is busy with one.
WORKER_TIMEOUT_SECONDS = 900
# uvicorn's gunicorn worker (the maintained `uvicorn-worker` package). gunicorn 26's own `asgi`
# worker was tried first: it left every few kept-alive POSTs unanswered (30 s client timeouts).
WORKER_CLASS = "uvicorn_worker.UvicornWorker"
# The master's hooks (gc.freeze before each fork: the module says why).
GUNICORN_HOOKS = "deployer.server.gunicorn_hooks"


# The variables `mlflow server` passes its workers (mlflow.server.constants; a test checks the
# names against MLflow's, importing which here would load the whole app before the exec).
MLFLOW_SERVER_ENV = {
    "backend": "_MLFLOW_SERVER_FILE_STORE",
    "registry": "_MLFLOW_SERVER_REGISTRY_STORE",
    "serve_artifacts": "_MLFLOW_SERVER_SERVE_ARTIFACTS",
    "artifact_root": "_MLFLOW_SERVER_ARTIFACT_ROOT",
    "artifacts_destination": "_MLFLOW_SERVER_ARTIFACT_DESTINATION",
}


def gunicorn_argv(settings: ServerSettings) -> list[str]:
    """gunicorn serving the ASGI app, with graceful shutdown inside Cloud Run's grace period.

    Behind IAP the app is loaded once before the workers fork (--preload): faster start, and the
    workers share its memory copy-on-write. Not with basic auth, whose app opens its user
    database while loading: a connection must not be shared across forked workers.
    """
    preload = ["--preload"] if settings.auth_mode is not AuthMode.BASIC else []
    return [
        sys.executable,
        "-m",
        "gunicorn",
        *preload,
        "--config",
        f"python:{GUNICORN_HOOKS}",
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(settings.workers),
        "--worker-class",
        WORKER_CLASS,
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT_SECONDS),
        "--timeout",
        str(WORKER_TIMEOUT_SECONDS),
        "--keep-alive",
        "75",
        "--access-logfile",
        "-",
        # gunicorn 26 opens a control socket under $HOME by default: one per host would
        # clash between servers and fail on a read-only home in the container.
        "--no-control-socket",
        "deployer.server.iap_app:create_asgi_app()",
    ]


def server_environment(settings: ServerSettings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment MLflow's app reads, as `mlflow server` would have set it."""
    env = dict(base)
    env.update(FIXED_SERVER_ENV)
    env["_MLFLOW_SERVER_BOOT_ID"] = uuid.uuid4().hex
    env[MLFLOW_SERVER_ENV["backend"]] = settings.backend_store_uri
    env[MLFLOW_SERVER_ENV["registry"]] = settings.backend_store_uri
    env[MLFLOW_SERVER_ENV["serve_artifacts"]] = "true"
    env[MLFLOW_SERVER_ENV["artifact_root"]] = "mlflow-artifacts:/"
    env[MLFLOW_SERVER_ENV["artifacts_destination"]] = settings.artifacts_destination
    # Host-header (DNS rebinding) and CORS checks of MLflow's app, which reads them from here.
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


def _say(message: str) -> None:
    print(f"mlflow-server-entrypoint: {message}", flush=True)


def _fail(message: str) -> int:
    print(f"mlflow-server-entrypoint: error: {message}", file=sys.stderr, flush=True)
    return 2


def migrate(env: Mapping[str, str]) -> int:
    try:
        settings = load_settings(env)
    except SettingsError as e:
        return _fail(str(e))
    try:
        # A deploy while the database sleeps: wake it and wait, so the migration can connect.
        wake.wait_until_awake(env, echo=_say)
    except (TimeoutError, ValueError) as e:
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


# The database answered and said no: waiting will not change that (wrong password, no database).
_REFUSED = re.compile(
    r"authentication failed|access denied|does not exist|unknown database|permission denied|"
    r"too long",
    re.IGNORECASE,
)


def wait_for_schema(
    settings: ServerSettings,
    check: Callable[[str], SchemaState] = require_current_schema,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SchemaState:
    """Check the schema, retrying while the database cannot be reached, up to DB_WAIT_SECONDS.

    On Cloud Run, Direct VPC egress can take a minute or more to connect after an instance
    starts; a single attempt would crash-loop the instance. A wrong schema is not retried.
    """
    from sqlalchemy.exc import InterfaceError, OperationalError

    deadline = clock() + settings.db_wait_seconds
    delay = 1.0
    while True:
        try:
            return check(settings.backend_store_uri)
        except (OperationalError, InterfaceError) as e:
            left = deadline - clock()
            if left <= 0 or _REFUSED.search(str(e)):
                raise
            print(
                f"mlflow-server-entrypoint: database not reachable yet ({_first_line(e)}); "
                f"retrying for up to {left:.0f} s more",
                file=sys.stderr,
                flush=True,
            )
            sleep(min(delay, left))
            delay = min(delay * 2, 10.0)


def prepare_serve(env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Validate everything `serve` needs; return the argv and environment to exec.

    Raises SettingsError or SchemaNotReady; never starts anything.
    """
    settings = load_settings(env)
    try:
        awake = wake.wake_before_serve(env)
    except ValueError as e:  # DB_SLEEP_AFTER_MINUTES or CLOUD_SQL_CONNECTION_NAME malformed
        raise SettingsError(str(e)) from None
    if awake:
        wait_for_schema(settings)
    else:
        # Asked to wake; the migration job checked the schema when this image was deployed, and
        # requests get 503 + Retry-After until the database is up.
        _say("the database sleeps and is waking: starting without the schema check")
    child_env = server_environment(settings, env)
    if settings.auth_mode is AuthMode.BASIC:
        bootstrap_basic_auth(child_env)
    return gunicorn_argv(settings), child_env


def bootstrap_basic_auth(child_env: dict[str, str]) -> None:
    """Create basic auth's admin user once, before the workers exist, as `mlflow server` does:
    a missing secret or bootstrap password then fails here with one line, not in every worker."""
    os.environ.update(child_env)
    from mlflow.server.auth import bootstrap_admin_user, get_flask_server_secret_key

    try:
        get_flask_server_secret_key()
        bootstrap_admin_user()
    except Exception as e:  # MLflow's own message names the missing setting
        raise SettingsError(f"basic auth cannot start: {_first_line(e)}") from e
    child_env["_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED"] = "true"


def serve(env: Mapping[str, str]) -> int:
    try:
        argv, child_env = prepare_serve(env)
    except (SettingsError, SchemaNotReady) as e:
        return _fail(str(e))
    except Exception as e:  # database still unreachable after the wait
        return _fail(
            f"cannot check the tracking database: {type(e).__name__}: {_first_line(e)} "
            "(check the database settings and that the instance is running)"
        )
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
