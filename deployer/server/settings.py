"""The server's settings, read from the environment only.

This is the contract between `terraform/` (which sets these variables on the Cloud Run service
and the migration job), `deployer local` (which sets them for one machine) and the entrypoint.
Every name the server reads is listed in `ENV`; a test reads the Terraform and checks the two
agree, so they cannot drift.

A missing or malformed setting raises `SettingsError` naming the variable, and the entrypoint
turns that into one line and a non-zero exit before anything is started.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy.engine import URL


class Env(StrEnum):
    """Every environment variable the server entrypoint reads."""

    PORT = "PORT"
    HOST = "SERVER_HOST"
    WORKERS = "SERVER_WORKERS"
    THREADS = "SERVER_THREADS"
    BACKEND_STORE_URI = "BACKEND_STORE_URI"
    DB_ENGINE = "DB_ENGINE"
    DB_USER = "DB_USER"
    DB_PASSWORD = "DB_PASSWORD"
    DB_NAME = "DB_NAME"
    CLOUD_SQL_CONNECTION_NAME = "CLOUD_SQL_CONNECTION_NAME"
    CLOUD_SQL_SOCKET_ROOT = "CLOUD_SQL_SOCKET_ROOT"
    DB_WAIT_SECONDS = "DB_WAIT_SECONDS"
    DB_MAX_CONNECTIONS = "DB_MAX_CONNECTIONS"
    DB_RESERVED_CONNECTIONS = "DB_RESERVED_CONNECTIONS"
    MAX_INSTANCES = "MAX_INSTANCES"
    ARTIFACTS_DESTINATION = "ARTIFACTS_DESTINATION"
    ALLOWED_HOSTS = "ALLOWED_HOSTS"
    CORS_ALLOWED_ORIGINS = "CORS_ALLOWED_ORIGINS"
    AUTH_MODE = "AUTH_MODE"
    IAP_AUDIENCE = "IAP_AUDIENCE"
    IAP_JWKS_URL = "IAP_JWKS_URL"
    SIGNING_SERVICE_ACCOUNT = "SIGNING_SERVICE_ACCOUNT"
    ADMIN_EMAILS = "ADMIN_EMAILS"
    GOOGLE_CLOUD_PROJECT = "GOOGLE_CLOUD_PROJECT"
    # Where IAM Credentials' REST API is (tests point it at a stand-in speaking the same API).
    IAM_CREDENTIALS_ENDPOINT = "IAM_CREDENTIALS_ENDPOINT"


class AuthMode(StrEnum):
    IAP = "iap"  # Cloud Run behind IAP: verify x-goog-iap-jwt-assertion on every request
    BASIC = "basic"  # one machine: MLflow's basic-auth app, users in a local database
    NONE = "none"  # explicit opt-out, for tests of the bare server only


class DbEngine(StrEnum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"


IAP_JWKS_URL_DEFAULT = "https://www.gstatic.com/iap/verify/public_key-jwk"
IAM_CREDENTIALS_ENDPOINT_DEFAULT = "https://iamcredentials.googleapis.com"
IAP_ISSUER = "https://cloud.google.com/iap"
CLOUD_SQL_SOCKET_ROOT_DEFAULT = "/cloudsql"

# MLflow opens one SQLAlchemy engine for the tracking store and one for the model registry in
# every server process (each worker, and the `mlflow server` parent that initialises the stores
# before forking), each engine with its own pool.
ENGINES_PER_PROCESS = 2

_CONNECTION_NAME = re.compile(
    r"^(?:[a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]:[a-z]+-[a-z]+[0-9]:[a-z][a-z0-9-]{0,97}$"
)
_IAP_AUDIENCE = re.compile(
    r"^/projects/[0-9]+/(?:locations/[a-z0-9-]+/services/[a-z0-9-]+|"
    r"global/backendServices/[0-9]+|apps/[a-z0-9.:-]+)$"
)
_HOST_PATTERN = re.compile(r"^[A-Za-z0-9*.:\[\]-]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BARE_EMAIL = re.compile(r"[^@\s:,]+@[^@\s:,]+\.[^@\s:,]+")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class PoolBudget:
    """SQLAlchemy pool per engine, sized so every instance fits the database's connection cap."""

    pool_size: int
    max_overflow: int

    @property
    def per_engine(self) -> int:
        return self.pool_size + self.max_overflow


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    workers: int
    threads: int
    backend_store_uri: str
    artifacts_destination: str
    allowed_hosts: tuple[str, ...]
    cors_allowed_origins: tuple[str, ...]
    auth_mode: AuthMode
    iap_audience: str | None = None
    iap_jwks_url: str = IAP_JWKS_URL_DEFAULT
    pool: PoolBudget | None = None
    signing_service_account: str | None = None
    # Members allowed destructive calls (deletes, webhooks, the AI gateway), lowercased. Empty
    # means nobody: the deployer fills it with the deploying owner unless told otherwise.
    admin_emails: frozenset[str] = frozenset()
    db_wait_seconds: int = 120
    google_cloud_project: str | None = None
    iam_credentials_endpoint: str = IAM_CREDENTIALS_ENDPOINT_DEFAULT


def _get(env: Mapping[str, str], name: Env) -> str | None:
    value = env.get(name.value)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _require(env: Mapping[str, str], name: Env, why: str) -> str:
    value = _get(env, name)
    if value is None:
        raise SettingsError(f"{name.value} is not set: {why}")
    return value


def _int(env: Mapping[str, str], name: Env, default: int, low: int, high: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name.value}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name.value}={value} is out of range: use {low} to {high}")
    return value


def _csv(env: Mapping[str, str], name: Env) -> tuple[str, ...]:
    raw = _get(env, name)
    if raw is None:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def database_uri_from_parts(
    engine: DbEngine, user: str, password: str, database: str, socket_dir: str
) -> str:
    """The SQLAlchemy URI for a Cloud SQL unix socket; any character in the password is safe.

    `URL.create` percent-encodes user, password and database, so `@:/?#%&` cannot break the URI.
    """
    if engine is DbEngine.POSTGRESQL:
        url = URL.create(
            "postgresql+psycopg2",
            username=user,
            password=password,
            database=database,
            query={"host": socket_dir},
        )
    else:
        url = URL.create(
            "mysql+pymysql",
            username=user,
            password=password,
            database=database,
            query={"unix_socket": socket_dir},
        )
    return url.render_as_string(hide_password=False)


def _backend_store_uri(env: Mapping[str, str]) -> str:
    full = _get(env, Env.BACKEND_STORE_URI)
    parts = [Env.DB_USER, Env.DB_PASSWORD, Env.DB_NAME, Env.CLOUD_SQL_CONNECTION_NAME]
    given = [p for p in parts if _get(env, p) is not None]
    if full is not None:
        if given:
            raise SettingsError(
                f"{Env.BACKEND_STORE_URI.value} and {given[0].value} are both set: "
                "give either a full URI or the Cloud SQL parts, not both"
            )
        if not re.match(r"^(sqlite|postgresql|mysql|mssql)(\+\w+)?://", full):
            raise SettingsError(
                f"{Env.BACKEND_STORE_URI.value} must be a SQLAlchemy URI such as "
                "sqlite:////data/mlflow.db or postgresql://user:pass@host/db"
            )
        return full
    if not given:
        raise SettingsError(
            f"no database configured: set {Env.BACKEND_STORE_URI.value}, or "
            f"{', '.join(p.value for p in parts)}"
        )
    for p in parts:
        if _get(env, p) is None and not (p is Env.DB_PASSWORD and Env.DB_PASSWORD.value in env):
            raise SettingsError(
                f"{p.value} is not set: the Cloud SQL settings need all of "
                f"{', '.join(x.value for x in parts)}"
            )
    engine_raw = (_get(env, Env.DB_ENGINE) or DbEngine.POSTGRESQL.value).lower()
    try:
        engine = DbEngine(engine_raw)
    except ValueError:
        raise SettingsError(
            f"{Env.DB_ENGINE.value}={engine_raw!r} is not supported: use postgresql or mysql"
        ) from None
    connection_name = _require(env, Env.CLOUD_SQL_CONNECTION_NAME, "")
    if not _CONNECTION_NAME.match(connection_name):
        raise SettingsError(
            f"{Env.CLOUD_SQL_CONNECTION_NAME.value}={connection_name!r} is not of the form "
            "PROJECT:REGION:INSTANCE"
        )
    root = (_get(env, Env.CLOUD_SQL_SOCKET_ROOT) or CLOUD_SQL_SOCKET_ROOT_DEFAULT).rstrip("/")
    # The password may legitimately contain leading/trailing spaces: do not strip it.
    password = env[Env.DB_PASSWORD.value]
    return database_uri_from_parts(
        engine,
        user=_require(env, Env.DB_USER, ""),
        password=password,
        database=_require(env, Env.DB_NAME, ""),
        socket_dir=f"{root}/{connection_name}",
    )


def _artifacts_destination(env: Mapping[str, str]) -> str:
    dest = _require(
        env,
        Env.ARTIFACTS_DESTINATION,
        "where artifacts are stored, e.g. gs://BUCKET/artifacts or /data/artifacts",
    )
    scheme = urlsplit(dest).scheme
    if scheme == "gs":
        if not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", dest):
            raise SettingsError(
                f"{Env.ARTIFACTS_DESTINATION.value}={dest!r} is not a valid gs://BUCKET[/PATH]"
            )
    elif scheme not in ("", "file"):
        raise SettingsError(
            f"{Env.ARTIFACTS_DESTINATION.value}={dest!r}: use gs://BUCKET[/PATH] or a local path"
        )
    elif scheme == "" and not dest.startswith("/"):
        raise SettingsError(f"{Env.ARTIFACTS_DESTINATION.value}={dest!r} must be an absolute path")
    return dest


def size_pool(max_connections: int, reserved: int, max_instances: int, workers: int) -> PoolBudget:
    """Split the database's connection cap over every engine of every worker of every instance.

    MLflow cannot set `max_overflow=0` (its env var is ignored when falsy), so each engine needs
    room for at least two connections: one pooled, one overflow.
    """
    engines_per_instance = (workers + 1) * ENGINES_PER_PROCESS
    per_engine = (max_connections - reserved) // (max_instances * engines_per_instance)
    if per_engine < 2:
        fits = max(0, (max_connections - reserved) // (2 * engines_per_instance))
        raise SettingsError(
            f"{Env.MAX_INSTANCES.value}={max_instances} x ({Env.WORKERS.value}={workers} + 1) "
            f"processes x {ENGINES_PER_PROCESS} pools x 2 connections exceeds "
            f"{Env.DB_MAX_CONNECTIONS.value}="
            f"{max_connections} minus {reserved} reserved: lower max instances to {fits} "
            "or pick a larger database tier"
        )
    pool_size = math.ceil(per_engine / 2)
    return PoolBudget(pool_size=pool_size, max_overflow=per_engine - pool_size)


def _allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    hosts = _csv(env, Env.ALLOWED_HOSTS)
    for host in hosts:
        if "://" in host or "/" in host or not _HOST_PATTERN.match(host):
            raise SettingsError(
                f"{Env.ALLOWED_HOSTS.value} entry {host!r} is not a host name "
                "(give mlflow-abc-uc.a.run.app, not https://…/)"
            )
    return hosts


def _cors_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    origins = _csv(env, Env.CORS_ALLOWED_ORIGINS)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise SettingsError(
                f"{Env.CORS_ALLOWED_ORIGINS.value} entry {origin!r} is not an origin "
                "such as https://mlflow.example.com"
            )
    return tuple(o.rstrip("/") for o in origins)


def _admin_emails(env: Mapping[str, str]) -> frozenset[str]:
    emails = _csv(env, Env.ADMIN_EMAILS)
    for email in emails:
        if not _BARE_EMAIL.fullmatch(email):
            raise SettingsError(
                f"{Env.ADMIN_EMAILS.value} entry {email!r} is not an email: give bare emails, "
                "comma-separated (alice@example.com,bob@example.com)"
            )
    return frozenset(e.lower() for e in emails)


def _auth_mode(env: Mapping[str, str]) -> AuthMode:
    mode_raw = (_get(env, Env.AUTH_MODE) or "").lower()
    if not mode_raw:
        raise SettingsError(
            f"{Env.AUTH_MODE.value} is not set: use iap (Cloud Run behind IAP), "
            "basic (one machine) or none (tests only)"
        )
    try:
        return AuthMode(mode_raw)
    except ValueError:
        raise SettingsError(
            f"{Env.AUTH_MODE.value}={mode_raw!r} is not one of iap, basic, none"
        ) from None


def _iap_audience(env: Mapping[str, str], auth_mode: AuthMode) -> str | None:
    audience = _get(env, Env.IAP_AUDIENCE)
    if auth_mode is AuthMode.IAP:
        if audience is None:
            raise SettingsError(
                f"{Env.IAP_AUDIENCE.value} is not set: with {Env.AUTH_MODE.value}=iap it must be "
                "/projects/PROJECT_NUMBER/locations/REGION/services/SERVICE"
            )
        if not _IAP_AUDIENCE.match(audience):
            raise SettingsError(
                f"{Env.IAP_AUDIENCE.value}={audience!r} is not an IAP audience such as "
                "/projects/123456789/locations/us-central1/services/mlflow"
            )
    elif audience is not None:
        raise SettingsError(
            f"{Env.IAP_AUDIENCE.value} is set but {Env.AUTH_MODE.value}={auth_mode.value}: "
            "set AUTH_MODE=iap or unset IAP_AUDIENCE"
        )
    return audience


def _http_url(env: Mapping[str, str], name: Env, default: str) -> str:
    url = _get(env, name) or default
    if urlsplit(url).scheme not in ("http", "https"):
        raise SettingsError(f"{name.value}={url!r} is not an http(s) URL")
    return url.rstrip("/") if name is Env.IAM_CREDENTIALS_ENDPOINT else url


def _pool(env: Mapping[str, str], workers: int) -> PoolBudget | None:
    if _get(env, Env.DB_MAX_CONNECTIONS) is None:
        return None
    return size_pool(
        max_connections=_int(env, Env.DB_MAX_CONNECTIONS, 0, 5, 100_000),
        reserved=_int(env, Env.DB_RESERVED_CONNECTIONS, 5, 0, 1000),
        max_instances=_int(env, Env.MAX_INSTANCES, 1, 1, 1000),
        workers=workers,
    )


def _signer(env: Mapping[str, str]) -> str | None:
    signer = _get(env, Env.SIGNING_SERVICE_ACCOUNT)
    if signer is not None and not _EMAIL.match(signer):
        raise SettingsError(
            f"{Env.SIGNING_SERVICE_ACCOUNT.value}={signer!r} is not a service account email"
        )
    return signer


def load_settings(env: Mapping[str, str]) -> ServerSettings:
    """Read and validate every setting; raise `SettingsError` on the first bad one."""
    workers = _int(env, Env.WORKERS, 2, 1, 32)
    backend = _backend_store_uri(env)
    artifacts = _artifacts_destination(env)
    auth_mode = _auth_mode(env)
    return ServerSettings(
        admin_emails=_admin_emails(env),
        host=_get(env, Env.HOST) or "0.0.0.0",
        port=_int(env, Env.PORT, 8080, 1, 65535),
        workers=workers,
        threads=_int(env, Env.THREADS, 4, 1, 64),
        backend_store_uri=backend,
        artifacts_destination=artifacts,
        allowed_hosts=_allowed_hosts(env),
        cors_allowed_origins=_cors_origins(env),
        auth_mode=auth_mode,
        iap_audience=_iap_audience(env, auth_mode),
        iap_jwks_url=_http_url(env, Env.IAP_JWKS_URL, IAP_JWKS_URL_DEFAULT),
        pool=_pool(env, workers),
        signing_service_account=_signer(env),
        # How long `serve` retries an unreachable database at start (Direct VPC egress can take
        # a minute or more to connect); the startup probe's budget must exceed it.
        db_wait_seconds=_int(env, Env.DB_WAIT_SECONDS, 120, 0, 600),
        google_cloud_project=_get(env, Env.GOOGLE_CLOUD_PROJECT),
        iam_credentials_endpoint=_http_url(
            env, Env.IAM_CREDENTIALS_ENDPOINT, IAM_CREDENTIALS_ENDPOINT_DEFAULT
        ),
    )
