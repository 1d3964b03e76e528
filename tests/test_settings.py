"""Settings from the environment: URIs, pool budget, and the one-line errors."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from deployer.server.entrypoint import (
    MLFLOW_SERVER_ENV,
    gunicorn_argv,
    server_environment,
    wait_for_schema,
)
from deployer.server.settings import (
    ENGINES_PER_PROCESS,
    SettingsError,
    load_settings,
    size_pool,
)

CLOUD = {
    "DB_USER": "mlflow",
    "DB_PASSWORD": "p@ss:/?#%&w ord",
    "DB_NAME": "mlflow",
    "CLOUD_SQL_CONNECTION_NAME": "my-project:europe-west1:mlflow-db",
    "ARTIFACTS_DESTINATION": "gs://my-bucket/artifacts",
    "AUTH_MODE": "iap",
    "IAP_AUDIENCE": "/projects/42/locations/europe-west1/services/mlflow",
}


def test_postgres_unix_socket_uri_keeps_every_character_of_the_password():
    s = load_settings(CLOUD)
    url = make_url(s.backend_store_uri)
    assert url.drivername == "postgresql+psycopg2"
    assert url.password == CLOUD["DB_PASSWORD"]
    assert url.host is None and url.database == "mlflow"
    assert url.query["host"] == "/cloudsql/my-project:europe-west1:mlflow-db"


def test_mysql_unix_socket_uri():
    s = load_settings({**CLOUD, "DB_ENGINE": "mysql"})
    url = make_url(s.backend_store_uri)
    assert url.drivername == "mysql+pymysql"
    assert url.password == CLOUD["DB_PASSWORD"]
    assert url.query["unix_socket"] == "/cloudsql/my-project:europe-west1:mlflow-db"


def test_domain_scoped_project_connection_name_is_accepted():
    s = load_settings({**CLOUD, "CLOUD_SQL_CONNECTION_NAME": "example.com:proj-1:us-east1:db"})
    assert "example.com:proj-1:us-east1:db" in make_url(s.backend_store_uri).query["host"]


def test_full_uri_and_parts_are_exclusive():
    with pytest.raises(SettingsError, match="both set"):
        load_settings({**CLOUD, "BACKEND_STORE_URI": "sqlite:////tmp/x.db"})


def test_pool_fits_the_connection_cap_with_reserve():
    budget = size_pool(max_connections=50, reserved=5, max_instances=2, workers=2)
    per_instance = (2 + 1) * ENGINES_PER_PROCESS * budget.per_engine
    assert 2 * per_instance <= 50 - 5
    assert budget.max_overflow >= 1 and budget.pool_size >= 1
    # db-f1-micro allows 25 connections: one instance of two workers fits, two do not.
    assert size_pool(25, 5, 1, 2).per_engine == 3
    with pytest.raises(SettingsError, match="lower max instances to 1"):
        size_pool(25, 5, 2, 2)


@pytest.mark.parametrize("instances", [1, 2, 3, 5, 10, 20, 40])
@pytest.mark.parametrize("cap", [25, 50, 100, 400, 1000])
def test_pool_never_exceeds_the_cap(instances, cap):
    try:
        budget = size_pool(cap, 5, instances, 2)
    except SettingsError as e:
        assert "lower max instances" in str(e)
        return
    assert instances * 3 * ENGINES_PER_PROCESS * budget.per_engine <= cap - 5


def test_pool_settings_reach_mlflow():
    s = load_settings(
        {**CLOUD, "DB_MAX_CONNECTIONS": "100", "MAX_INSTANCES": "3", "SERVER_WORKERS": "2"}
    )
    env = server_environment(s, {})
    total = int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) + int(
        env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]
    )
    assert 3 * 3 * ENGINES_PER_PROCESS * total <= 95
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] == "true"


def test_the_database_uri_never_appears_on_the_command_line():
    s = load_settings(CLOUD)
    argv = gunicorn_argv(s)
    assert not any(CLOUD["DB_PASSWORD"] in a for a in argv)
    env = server_environment(s, {})
    assert env[MLFLOW_SERVER_ENV["backend"]] == s.backend_store_uri
    assert env[MLFLOW_SERVER_ENV["registry"]] == s.backend_store_uri


def test_mlflow_server_variables_are_mlflows_own_names():
    from mlflow.server import constants

    assert MLFLOW_SERVER_ENV == {
        "backend": constants.BACKEND_STORE_URI_ENV_VAR,
        "registry": constants.REGISTRY_STORE_URI_ENV_VAR,
        "serve_artifacts": constants.SERVE_ARTIFACTS_ENV_VAR,
        "artifact_root": constants.ARTIFACT_ROOT_ENV_VAR,
        "artifacts_destination": constants.ARTIFACTS_DESTINATION_ENV_VAR,
    }


def test_gunicorn_serves_the_whole_asgi_app_without_a_supervisor():
    argv = gunicorn_argv(load_settings(CLOUD))
    assert argv[1:3] == ["-m", "gunicorn"]
    assert "mlflow" not in argv[:3]
    assert argv[-1] == "deployer.server.iap_app:create_asgi_app()"
    assert argv[argv.index("--worker-class") + 1] == "uvicorn_worker.UvicornWorker"


class FakeDatabase:
    """Unreachable for `down_for` seconds of a fake clock, then answers."""

    def __init__(self, down_for: float, error: str = "could not connect to server") -> None:
        self.now = 0.0
        self.down_for = down_for
        self.error = error
        self.calls = 0

    def check(self, uri: str) -> str:
        from sqlalchemy.exc import OperationalError

        self.calls += 1
        if self.now < self.down_for:
            raise OperationalError("connect", {}, Exception(self.error))
        return "current"

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(db: FakeDatabase, **env: str):
    settings = load_settings({**CLOUD, **env})
    return wait_for_schema(settings, check=db.check, clock=lambda: db.now, sleep=db.sleep)


def test_serve_waits_for_a_database_that_connects_late():
    db = FakeDatabase(down_for=95)  # Direct VPC egress: a minute or more after start
    assert _wait(db) == "current"
    assert 95 <= db.now < 120 and db.calls > 3


def test_serve_gives_up_after_db_wait_seconds():
    from sqlalchemy.exc import OperationalError

    db = FakeDatabase(down_for=1_000)
    with pytest.raises(OperationalError):
        _wait(db, DB_WAIT_SECONDS="30")
    assert db.now == pytest.approx(30)


def test_a_refusing_database_is_not_retried():
    from sqlalchemy.exc import OperationalError

    db = FakeDatabase(down_for=1_000, error='password authentication failed for user "mlflow"')
    with pytest.raises(OperationalError):
        _wait(db)
    assert db.calls == 1 and db.now == 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"DB_ENGINE": "oracle"}, "DB_ENGINE='oracle' is not supported"),
        ({"ARTIFACTS_DESTINATION": "gs://Bad_Bucket"}, "not a valid gs://BUCKET"),
        ({"ARTIFACTS_DESTINATION": "relative/path"}, "absolute path"),
        ({"CORS_ALLOWED_ORIGINS": "mlflow.example.com"}, "is not an origin"),
        ({"IAP_AUDIENCE": "my-service"}, "is not an IAP audience"),
        ({"AUTH_MODE": "basic"}, "IAP_AUDIENCE is set but AUTH_MODE=basic"),
        ({"SERVER_WORKERS": "0"}, "out of range"),
        ({"SIGNING_SERVICE_ACCOUNT": "not-an-email"}, "not a service account email"),
        ({"IAP_JWKS_URL": "file:///etc/keys"}, "not an http(s) URL"),
    ],
)
def test_malformed_settings_name_the_variable(change, needle):
    with pytest.raises(SettingsError) as e:
        load_settings({**CLOUD, **change})
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_lean_head_revision_matches_mlflows_own():
    from mlflow.store.db.utils import _get_latest_schema_revision

    from deployer.server.schema import head_revision

    assert head_revision() == _get_latest_schema_revision()


def test_app_is_preloaded_except_with_basic_auth():
    assert "--preload" in gunicorn_argv(load_settings(CLOUD))
    local = {
        "BACKEND_STORE_URI": "sqlite:////tmp/x.db",
        "ARTIFACTS_DESTINATION": "/tmp/a",
        "AUTH_MODE": "basic",
    }
    assert "--preload" not in gunicorn_argv(load_settings(local))


def test_graceful_shutdown_ends_inside_cloud_runs_grace():
    from deployer.server.entrypoint import GRACEFUL_TIMEOUT_SECONDS

    # Cloud Run sends SIGKILL 10 s after SIGTERM; gunicorn kills workers still busy after this.
    argv = gunicorn_argv(load_settings(CLOUD))
    assert int(argv[argv.index("--graceful-timeout") + 1]) == GRACEFUL_TIMEOUT_SECONDS < 10
