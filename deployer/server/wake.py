"""The database that sleeps, server side: record the last request, wake the instance on demand.

The sleeper job (`sleeper.py`) stops the Cloud SQL instance (activation policy NEVER) when the
last request is older than DB_SLEEP_AFTER_MINUTES. Here, every request that reaches MLflow:
- is recorded, cheaply: the object LAST_REQUEST_OBJECT (gs://BUCKET/NAME) is rewritten with the
  time at most once a minute per server instance, off the request path. A steady user costs at
  most one Class A operation a minute (~$0.22 a month at $0.005 per 1,000), an idle one nothing;
  Cloud Monitoring's request_count would need no server code but lags by minutes and would give
  the job a monitoring role too;
- finds the database awake (checked through the Cloud SQL Admin API at most once a minute), or
  wakes it (PATCH settings.activationPolicy = ALWAYS) and is answered 503 with Retry-After and a
  short page ("waking the database, about N s") until the instance is RUNNABLE.

Settings (environment): DB_SLEEP_AFTER_MINUTES (0 = off), CLOUD_SQL_CONNECTION_NAME,
LAST_REQUEST_OBJECT, and SQLADMIN_ENDPOINT (tests point it at a local fake of the Admin API).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_logger = logging.getLogger(__name__)

ADMIN_ENDPOINT = "https://sqladmin.googleapis.com"
ENV_ENDPOINT = "SQLADMIN_ENDPOINT"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EXEMPT_PATHS = frozenset({"/health", "/version"})
# Cloud SQL starts a small instance in about a minute; the page says so and clients retry often
# enough to notice it soon after.
WAKE_ESTIMATE_SECONDS = 60
RETRY_AFTER_SECONDS = 10
AWAKE_TTL_SECONDS = 60
RECORD_INTERVAL_SECONDS = 60
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AdminApiError(RuntimeError):
    pass


class AdminApi:
    """The three Cloud SQL Admin API v1 calls the sleeping database needs, over google-auth.

    https://cloud.google.com/sql/docs/postgres/start-stop-restart-instance (REST v1: PATCH the
    instance with {"settings": {"activationPolicy": ...}}; the answer is an operation).
    """

    def __init__(
        self, project: str, instance: str, session: Any = None, endpoint: str = ""
    ) -> None:
        self.project = project
        self.instance = instance
        self.endpoint = (endpoint or os.environ.get(ENV_ENDPOINT) or ADMIN_ENDPOINT).rstrip("/")
        self._session = session

    @property
    def session(self) -> Any:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=[SCOPE])
            self._session = AuthorizedSession(credentials)
        return self._session

    def _url(self, suffix: str = "") -> str:
        return f"{self.endpoint}/v1/projects/{self.project}/instances/{self.instance}{suffix}"

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        r = self.session.request(method, url, json=body, timeout=30)
        if r.status_code >= 400:
            raise AdminApiError(f"{method} {url}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def get(self) -> dict:
        return self._call("GET", self._url())

    def set_activation_policy(self, policy: str) -> dict:
        return self._call("PATCH", self._url(), {"settings": {"activationPolicy": policy}})

    def pending_operations(self) -> list[dict]:
        """The instance's operations not yet DONE (a start in progress is one of them)."""
        url = f"{self.endpoint}/v1/projects/{self.project}/operations"
        r = self.session.request(
            "GET", url, params={"instance": self.instance, "maxResults": 10}, timeout=30
        )
        if r.status_code >= 400:
            raise AdminApiError(f"GET {url}: HTTP {r.status_code}: {r.text[:300]}")
        return [op for op in r.json().get("items", []) if op.get("status") != "DONE"]


def is_awake(instance: Mapping[str, Any], pending: list[dict]) -> bool:
    """Up = RUNNABLE, policy ALWAYS, and no operation (such as the start itself) under way.

    A stopped instance is still RUNNABLE in the API, with activationPolicy NEVER (its state enum
    has no "stopped"); a start is a PATCH whose operation is DONE once the instance is up.
    """
    policy = instance.get("settings", {}).get("activationPolicy")
    return instance.get("state") == "RUNNABLE" and policy == "ALWAYS" and not pending


class Waker:
    """Knows whether the database is up; starts it, once, when a request finds it stopped."""

    def __init__(
        self,
        api: AdminApi,
        clock: Callable[[], float] = time.monotonic,
        awake_ttl: float = AWAKE_TTL_SECONDS,
    ) -> None:
        self.api = api
        self.clock = clock
        # Trusting an "awake" answer this long is safe: the sleeper stops the database only
        # after at least 15 idle minutes.
        self.awake_ttl = awake_ttl
        self._lock = threading.Lock()
        self._awake_at: float | None = None
        self._woken_at: float | None = None

    def seconds_to_wait(self) -> int | None:
        """None when the database is up; otherwise an estimate of the seconds left."""
        now = self.clock()
        if self._awake_at is not None and now - self._awake_at < self.awake_ttl:
            return None
        with self._lock:
            instance = self.api.get()
            policy = instance.get("settings", {}).get("activationPolicy")
            pending = self.api.pending_operations() if policy == "ALWAYS" else []
            if is_awake(instance, pending):
                self._awake_at, self._woken_at = now, None
                return None
            self._awake_at = None
            if policy != "ALWAYS":
                _logger.warning("database %s is asleep (%s): waking it", self.api.instance, policy)
                self.api.set_activation_policy("ALWAYS")
                self._woken_at = now
            started = self._woken_at if self._woken_at is not None else now
            return max(RETRY_AFTER_SECONDS, int(WAKE_ESTIMATE_SECONDS - (now - started)))


class LastRequestRecorder:
    """Writes the time of the latest request to gs://BUCKET/NAME, at most once a minute."""

    def __init__(self, url: str, writer: Callable[[str, str, str], None] | None = None) -> None:
        bucket, _, name = url.removeprefix("gs://").partition("/")
        if not url.startswith("gs://") or not bucket or not name:
            raise ValueError(f"LAST_REQUEST_OBJECT={url!r} is not gs://BUCKET/OBJECT")
        self.bucket, self.name = bucket, name
        self.writer = writer or _gcs_write
        self._last: float | None = None
        self._lock = threading.Lock()

    def touch(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._last is not None and now - self._last < RECORD_INTERVAL_SECONDS:
                return
            self._last = now
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        threading.Thread(target=self._write, args=(stamp,), daemon=True).start()

    def _write(self, stamp: str) -> None:
        try:
            self.writer(self.bucket, self.name, stamp)
        except Exception as e:  # never fail a request over the record; the next touch retries
            _logger.warning(
                "could not record the last request in gs://%s/%s: %s", self.bucket, self.name, e
            )
            with self._lock:
                self._last = None


def _gcs_write(bucket: str, name: str, content: str) -> None:
    from google.cloud import storage

    storage.Client().bucket(bucket).blob(name).upload_from_string(
        content, content_type="text/plain"
    )


def waiting_page(seconds: int, wants_html: bool) -> tuple[bytes, str]:
    message = f"waking the database, about {seconds} s"
    if wants_html:
        html = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv='refresh' content='{min(seconds, RETRY_AFTER_SECONDS)}'>"
            "<title>MLflow is waking up</title></head><body>"
            f"<p>The tracking database was asleep: {message}. This page reloads by itself.</p>"
            "</body></html>"
        )
        return html.encode(), "text/html; charset=utf-8"
    body = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}
    return json.dumps(body).encode(), "application/json"


def _retry_after(seconds: int) -> str:
    return str(min(seconds, RETRY_AFTER_SECONDS))


@dataclass
class Sleep:
    """What a request passes through: the recorder and the waker of one server process."""

    waker: Waker
    recorder: LastRequestRecorder | None

    def check(self, path: str) -> int | None:
        if path in EXEMPT_PATHS:
            return None
        if self.recorder is not None:
            self.recorder.touch()
        try:
            return self.waker.seconds_to_wait()
        except Exception as e:  # Admin API unreachable: let MLflow try the database itself
            _logger.warning("cannot tell whether the database is awake: %s", e)
            return None


class WakeMiddleware:
    """WSGI: answer 503 + Retry-After while the database wakes; otherwise pass through."""

    def __init__(self, app: WSGIApp, sleep: Sleep) -> None:
        self.app = app
        self.sleep = sleep

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        wait = self.sleep.check(environ.get("PATH_INFO", ""))
        if wait is None:
            return self.app(environ, start_response)
        body, ctype = waiting_page(wait, "text/html" in environ.get("HTTP_ACCEPT", ""))
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", ctype),
                ("Content-Length", str(len(body))),
                ("Retry-After", _retry_after(wait)),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


class AsgiWake:
    """The same for routes MLflow serves outside Flask under uvicorn."""

    def __init__(self, app: Any, sleep: Sleep) -> None:
        self.app = app
        self.sleep = sleep

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import asyncio

        wait = await asyncio.to_thread(self.sleep.check, scope.get("path", ""))
        if wait is None:
            await self.app(scope, receive, send)
            return
        accept = next((v for k, v in scope.get("headers", []) if k.lower() == b"accept"), b"")
        body, ctype = waiting_page(wait, b"text/html" in accept)
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", _retry_after(wait).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def parse_connection_name(connection_name: str) -> tuple[str, str]:
    """(project, instance). A domain-scoped project's name has a colon of its own
    (example.com:proj:REGION:INSTANCE, which settings.py accepts too); the Admin API takes that
    project ID whole."""
    parts = connection_name.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError(
            f"CLOUD_SQL_CONNECTION_NAME={connection_name!r} is not PROJECT:REGION:INSTANCE"
        )
    return ":".join(parts[:-2]), parts[-1]


def sleep_from_env(env: Mapping[str, str] | None = None) -> Sleep | None:
    """The request hook for this server, or None when the database never sleeps."""
    env = os.environ if env is None else env
    raw = env.get("DB_SLEEP_AFTER_MINUTES", "0") or "0"
    if not raw.isdigit():
        raise ValueError(f"DB_SLEEP_AFTER_MINUTES={raw!r} is not a whole number of minutes")
    if int(raw) == 0 or not env.get("CLOUD_SQL_CONNECTION_NAME"):
        return None
    project, instance = parse_connection_name(env["CLOUD_SQL_CONNECTION_NAME"])
    api = AdminApi(project, instance, endpoint=env.get(ENV_ENDPOINT, ""))
    url = env.get("LAST_REQUEST_OBJECT", "")
    ttl = float(env.get("WAKE_AWAKE_TTL_SECONDS") or AWAKE_TTL_SECONDS)  # tests shorten it
    return Sleep(Waker(api, awake_ttl=ttl), LastRequestRecorder(url) if url else None)


def wrap_wsgi(app: WSGIApp, env: Mapping[str, str] | None = None) -> WSGIApp:
    sleep = sleep_from_env(env)
    return app if sleep is None else WakeMiddleware(app, sleep)


def wrap_asgi(app: Any, env: Mapping[str, str] | None = None) -> Any:
    sleep = sleep_from_env(env)
    return app if sleep is None else AsgiWake(app, sleep)


def wake_before_serve(env: Mapping[str, str] | None = None) -> bool:
    """For the entrypoint's `serve`: True when the database is up (check the schema as usual);
    False when it sleeps - it has been asked to wake, and the server must start without
    touching it (the middleware answers 503 until it is up; the migration job checked the
    schema when this image was deployed)."""
    sleep = sleep_from_env(env)
    if sleep is None:
        return True
    try:
        return sleep.waker.seconds_to_wait() is None
    except Exception as e:
        _logger.warning("cannot tell whether the database is awake: %s", e)
        return True


def wait_until_awake(
    env: Mapping[str, str] | None = None,
    timeout: float = 540.0,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
) -> None:
    """For the entrypoint's `migrate` (the migration job): wake a sleeping database and wait
    for it, so a deploy while the database sleeps migrates instead of failing to connect.
    Raises TimeoutError naming the instance when it is not up within `timeout` seconds."""
    sleep_settings = sleep_from_env(env)
    if sleep_settings is None:
        return
    waker, waited = sleep_settings.waker, 0.0
    while (left := _seconds_or_none(waker, echo)) is not None:
        if waited >= timeout:
            raise TimeoutError(
                f"the database {waker.api.instance} did not wake within {timeout:.0f} s; "
                "see its operations: gcloud sql operations list --instance "
                f"{waker.api.instance} --project {waker.api.project}"
            )
        echo(f"waking the database {waker.api.instance} (about {left} s) ...")
        step = float(min(left, RETRY_AFTER_SECONDS))
        sleep(step)
        waited += step
        waker._awake_at = None  # look again, do not trust the cache


def _seconds_or_none(waker: Waker, echo: Callable[[str], None]) -> int | None:
    """The wait left; None also when the Admin API cannot be asked (on a first deploy the
    migration runs before the custom role's grant exists): the migration then goes ahead and
    fails with the database's own error if the database really is down."""
    try:
        return waker.seconds_to_wait()
    except Exception as e:
        echo(f"cannot tell whether the database sleeps ({e}); going ahead")
        return None
