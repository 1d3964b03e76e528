"""The database that sleeps: the sleeper job stops a real PostgreSQL through a fake Cloud SQL
Admin API, the server answers 503 + Retry-After while it wakes it, and clients wait it out."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sys
import threading
import time
import wsgiref.util
from pathlib import Path

import psycopg2
import pytest
import requests

from deployer import retry_after
from deployer.server import sleeper, wake
from tests.support.http import LocalHttpServer, Request, Response
from tests.support.postgres import Postgres
from tests.support.sqladmin import FakeSqlAdmin

REPO = Path(__file__).resolve().parents[1]
PROJECT, INSTANCE = "test-project", "mlflow-db-a1b2c3"
ENV = {
    "DB_SLEEP_AFTER_MINUTES": "60",
    "CLOUD_SQL_CONNECTION_NAME": f"{PROJECT}:us-central1:{INSTANCE}",
    "LAST_REQUEST_OBJECT": "gs://bucket/_deployer/last-request",
}
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
# The server trusts a database it saw awake for this long (wake.AWAKE_TTL_SECONDS, shortened
# for the test through WAKE_AWAKE_TTL_SECONDS).
AWAKE_CACHE_EXPIRY = 1.5


@pytest.fixture(scope="module")
def pg():
    server = Postgres().init().start()
    server.create_database("mlflow", "mlflow", "pw-Secret-123")
    yield server
    server.destroy()


@pytest.fixture
def admin(pg):
    fake = FakeSqlAdmin(pg, PROJECT, INSTANCE)
    yield fake
    fake.wait_idle()
    if fake.policy != "ALWAYS":
        fake.pg.start()
    fake.close()


def _api(admin: FakeSqlAdmin) -> wake.AdminApi:
    return wake.AdminApi(PROJECT, INSTANCE, session=requests.Session(), endpoint=admin.endpoint)


def _db_answers(pg: Postgres) -> bool:
    try:
        pg.connect(user="mlflow", password="pw-Secret-123", dbname="mlflow").close()
    except psycopg2.OperationalError:
        return False
    return True


def _reader(stamp: str | None):
    return lambda bucket, name: stamp


def test_the_fake_admin_api_stops_and_starts_the_real_database(admin, pg):
    api = _api(admin)
    op = api.set_activation_policy("NEVER")
    assert op["kind"] == "sql#operation" and op["operationType"] == "UPDATE"
    admin.wait_idle()
    assert api.get()["settings"]["activationPolicy"] == "NEVER" and not _db_answers(pg)
    api.set_activation_policy("ALWAYS")
    admin.wait_idle()
    assert api.pending_operations() == [] and _db_answers(pg)


def test_the_sleeper_stops_an_idle_database_and_keeps_a_busy_one(admin, pg):
    api = _api(admin)
    recent = (NOW - dt.timedelta(minutes=59)).isoformat()
    kept = sleeper.run(ENV, api, _reader(recent), now=lambda: NOW)
    assert not kept.stop and "in use" in kept.reason and admin.patches == []

    old = (NOW - dt.timedelta(minutes=61)).isoformat()
    stopped = sleeper.run(ENV, api, _reader(old), now=lambda: NOW)
    assert stopped.stop and admin.patches == ["NEVER"]
    admin.wait_idle()
    assert not _db_answers(pg)

    again = sleeper.run(ENV, api, _reader(old), now=lambda: NOW)
    assert not again.stop and "already asleep" in again.reason and admin.patches == ["NEVER"]


def test_the_sleeper_reads_again_before_stopping():
    """A request that lands between the first look and the stop keeps the database up."""
    stamps = iter([(NOW - dt.timedelta(hours=2)).isoformat(), NOW.isoformat()])

    class Api:
        def __init__(self) -> None:
            self.patched: list[str] = []

        def get(self):
            return {"state": "RUNNABLE", "settings": {"activationPolicy": "ALWAYS"}}

        def pending_operations(self):
            return []

        def set_activation_policy(self, policy):
            self.patched.append(policy)
            return {"name": "op"}

    api = Api()
    decision = sleeper.run(ENV, api, lambda b, n: next(stamps), now=lambda: NOW)
    assert not decision.stop and api.patched == []


def test_without_a_recorded_request_idle_time_counts_from_the_instance_creation():
    instance = {
        "state": "RUNNABLE",
        "createTime": "2026-11-25T09:00:00.000Z",
        "settings": {"activationPolicy": "ALWAYS"},
    }
    assert sleeper.decide(instance, [], None, NOW, 60).stop
    assert not sleeper.decide(instance, [], None, NOW, 240).stop
    busy = [{"status": "RUNNING", "operationType": "UPDATE"}]
    assert not sleeper.decide(instance, busy, None, NOW, 60).stop


def _call(app, path: str = "/api/2.0/mlflow/experiments/search", accept: str = ""):
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "HTTP_ACCEPT": accept}
    wsgiref.util.setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO()
    seen: dict = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return int(seen["status"].split()[0]), seen["headers"], body


def _mlflow_stand_in(pg: Postgres):
    """A WSGI app that, like MLflow, needs the database for every request."""

    def app(environ, start_response):
        conn = pg.connect(user="mlflow", password="pw-Secret-123", dbname="mlflow")
        conn.close()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"experiments": []}']

    return app


def test_a_request_wakes_the_sleeping_database_then_succeeds(admin, pg):
    api = _api(admin)
    api.set_activation_policy("NEVER")
    admin.wait_idle()
    admin.patches.clear()
    admin.start_delay = 0.5
    touched: list[str] = []
    recorder = wake.LastRequestRecorder(
        ENV["LAST_REQUEST_OBJECT"], lambda b, n, c: touched.append(c)
    )
    app = wake.WakeMiddleware(_mlflow_stand_in(pg), wake.Sleep(wake.Waker(api), recorder))

    status, headers, body = _call(app)
    assert status == 503 and headers["Retry-After"] == "10"
    assert json.loads(body)["message"].startswith("waking the database, about ")
    assert admin.patches == ["ALWAYS"]

    status, headers, body = _call(app, accept="text/html,*/*")
    assert status in (503, 200)
    if status == 503:
        assert b"waking the database" in body and headers["Content-Type"].startswith("text/html")
    assert admin.patches == ["ALWAYS"], "one wake, however many requests wait"

    admin.wait_idle()
    status, _, body = _call(app)
    assert status == 200 and body == b'{"experiments": []}'
    assert _call(app, "/health")[0] == 200
    time.sleep(0.2)
    assert len(touched) == 1, "the last request is recorded at most once a minute"


def test_health_never_waits_nor_wakes(admin, pg):
    api = _api(admin)
    api.set_activation_policy("NEVER")
    admin.wait_idle()
    admin.patches.clear()
    app = wake.WakeMiddleware(_mlflow_stand_in(pg), wake.Sleep(wake.Waker(api), None))

    def health(environ, start_response):
        start_response("200 OK", [])
        return [b"OK"]

    app.app = health
    assert _call(app, "/health")[0] == 200 and admin.patches == []


def test_sleep_is_off_at_zero_and_bad_settings_name_themselves():
    assert wake.sleep_from_env({**ENV, "DB_SLEEP_AFTER_MINUTES": "0"}) is None
    with pytest.raises(ValueError, match="DB_SLEEP_AFTER_MINUTES"):
        wake.sleep_from_env({**ENV, "DB_SLEEP_AFTER_MINUTES": "soon"})
    with pytest.raises(ValueError, match="LAST_REQUEST_OBJECT"):
        wake.sleep_from_env({**ENV, "LAST_REQUEST_OBJECT": "bucket/x"})


class _Waking:
    """A server that answers 503 + Retry-After `busy` times, then 200."""

    def __init__(self, busy: int, retry_after_value: str = "1") -> None:
        self.busy = busy
        self.value = retry_after_value
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, req: Request) -> Response:
        with self.lock:
            self.calls += 1
            if self.calls <= self.busy:
                return Response(503, {"message": "waking"}, {"Retry-After": self.value})
        return Response(200, {"ok": True, "body": req.body.decode()})


def test_the_client_waits_as_told_and_then_succeeds():
    waking = _Waking(busy=2)
    slept: list[float] = []
    with LocalHttpServer(waking) as server:
        session = retry_after.install(
            requests.Session(), retry_after.RetryAfterHook(30, sleep=slept.append)
        )
        r = session.post(server.url + "/api/2.0/mlflow/runs/create", data=b'{"a": 1}')
    assert r.status_code == 200 and r.json()["body"] == '{"a": 1}'
    assert slept == [1.0, 1.0] and waking.calls == 3 and len(r.history) == 2


def test_the_client_gives_up_when_the_budget_is_spent():
    waking = _Waking(busy=1000, retry_after_value="10")
    slept: list[float] = []
    with LocalHttpServer(waking) as server:
        session = retry_after.install(
            requests.Session(), retry_after.RetryAfterHook(25, sleep=slept.append)
        )
        r = session.get(server.url + "/x")
    assert r.status_code == 503 and slept == [10.0, 10.0] and waking.calls == 3


def test_retry_after_parsing():
    def resp(status: int, value: str | None) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        if value is not None:
            r.headers["Retry-After"] = value
        return r

    assert retry_after.retry_after_seconds(resp(503, "7")) == 7.0
    assert retry_after.retry_after_seconds(resp(503, "3600")) == 60.0
    assert retry_after.retry_after_seconds(resp(503, None)) is None
    assert retry_after.retry_after_seconds(resp(500, "5")) is None
    date = "Wed, 25 Nov 2026 12:00:30 GMT"
    assert retry_after.retry_after_seconds(resp(503, date), now=NOW.timestamp()) == 30.0
    with pytest.raises(ValueError, match="MLFLOW_WAKE_MAX_WAIT_SECONDS"):
        retry_after.max_wait_from_env({"MLFLOW_WAKE_MAX_WAIT_SECONDS": "long"})


def _env_for(admin: FakeSqlAdmin) -> dict[str, str]:
    return {**ENV, "SQLADMIN_ENDPOINT": admin.endpoint, "LAST_REQUEST_OBJECT": ""}


def test_serve_starts_without_the_schema_check_while_the_database_wakes(admin, pg, monkeypatch):
    monkeypatch.setattr(wake.AdminApi, "session", requests.Session())
    assert wake.wake_before_serve(_env_for(admin)) is True and admin.patches == []
    _api(admin).set_activation_policy("NEVER")
    admin.wait_idle()
    admin.patches.clear()
    assert wake.wake_before_serve(_env_for(admin)) is False
    assert admin.patches == ["ALWAYS"], "serving a sleeping database starts waking it"


def test_the_migration_waits_for_a_sleeping_database(admin, pg, monkeypatch):
    monkeypatch.setattr(wake.AdminApi, "session", requests.Session())
    _api(admin).set_activation_policy("NEVER")
    admin.wait_idle()
    admin.start_delay = 1.0
    said: list[str] = []
    wake.wait_until_awake(
        _env_for(admin), timeout=600, sleep=lambda s: time.sleep(0.2), echo=said.append
    )
    assert _db_answers(pg) and said and "waking the database" in said[0]
    _api(admin).set_activation_policy("NEVER")
    admin.wait_idle()
    admin.start_delay = 5.0
    said.clear()
    wake.wait_until_awake(
        {**_env_for(admin), "SQLADMIN_ENDPOINT": "http://127.0.0.1:9"}, echo=said.append
    )
    assert "going ahead" in said[0], "no Admin API (no grant yet): the migration goes ahead"
    with pytest.raises(TimeoutError, match="did not wake within 1 s"):
        wake.wait_until_awake(_env_for(admin), timeout=1, sleep=lambda s: None, echo=said.append)


def test_asgi_routes_get_the_same_503(admin, pg):
    import asyncio

    api = _api(admin)
    api.set_activation_policy("NEVER")
    admin.wait_idle()
    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    guard = wake.AsgiWake(app, wake.Sleep(wake.Waker(api), None))
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/v1/traces", "headers": [(b"accept", b"application/json")]}
    asyncio.run(guard(scope, None, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 503 and headers[b"retry-after"] == b"10" and reached == []
    admin.wait_idle()
    asyncio.run(guard(scope, None, send))
    assert reached == ["/v1/traces"]


def test_a_real_mlflow_client_rides_out_the_wake_and_loses_nothing(
    admin, pg, tmp_path, monkeypatch
):
    """MLflow's own HTTP retries honour Retry-After on 503: a script that starts while the
    database sleeps waits for it, then succeeds, and finds what it wrote before. The server
    calls the Admin API with its own credentials (the metadata server, as on Cloud Run)."""
    from mlflow import MlflowClient

    from deployer.server.schema import upgrade_schema
    from tests.support import processes
    from tests.support.google_fakes import GoogleFakes

    google = GoogleFakes(PROJECT)
    runtime = f"mlflow-server@{PROJECT}.iam.gserviceaccount.com"
    google.service_account(runtime)
    google.metadata_account = runtime

    uri = f"postgresql+psycopg2://mlflow:pw-Secret-123@/mlflow?host={pg.socket_dir}&port={pg.port}"
    upgrade_schema(uri)
    port = processes.free_port()
    env = {
        **google.client_env(tmp_path),
        **google.metadata_env(),
        **_env_for(admin),
        "_MLFLOW_SERVER_FILE_STORE": uri,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "WAKE_AWAKE_TTL_SECONDS": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(REPO)])
    server = processes.start(
        [sys.executable, "-m", "tests.support.wake_server", str(port)], env, tmp_path / "log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        processes.wait_healthy(url, server)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        client = MlflowClient(tracking_uri=url)
        before = client.create_experiment("before-sleep")
        _api(admin).set_activation_policy("NEVER")
        admin.wait_idle()
        admin.patches.clear()
        admin.start_delay = 2.0
        # From here on the fake Admin API wants a token the (fake) Google issued.
        admin.principal_of = lambda token: google.access_tokens.get(token, (None,))[0]
        time.sleep(AWAKE_CACHE_EXPIRY)
        started = time.monotonic()
        names = {e.name for e in client.search_experiments()}
        waited = time.monotonic() - started
        assert "before-sleep" in names and client.get_experiment(before).name == "before-sleep"
        assert admin.patches == ["ALWAYS"] and waited >= wake.RETRY_AFTER_SECONDS - 1
        assert set(admin.callers) == {runtime}, "the server calls as its own account"
    finally:
        server.stop()
        google.close()


def test_the_twins_gcloud_describes_a_sleeping_instance(capsys):
    """`deployer status` and a full apply read the activation policy with `gcloud sql instances
    describe`; the twin answers from what `patch` (or the server, through the twin) set."""
    from tests.twin import gcloud as twin_gcloud

    doc = {
        "resources": {
            "google_sql_database_instance": {
                "x": {
                    "name": INSTANCE,
                    "connection_name": ENV["CLOUD_SQL_CONNECTION_NAME"],
                    "settings": [{"tier": "db-f1-micro", "activation_policy": "ALWAYS"}],
                }
            }
        },
        "sql_activation": {INSTANCE: "NEVER"},
    }

    class Ctx:
        def doc(self):
            return doc

    assert twin_gcloud.sql_describe(Ctx(), ["sql", "instances", "describe", INSTANCE], {}) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["state"] == "RUNNABLE" and described["settings"]["activationPolicy"] == "NEVER"
    assert twin_gcloud.sql_describe(Ctx(), ["sql", "instances", "describe", "other"], {}) == 1


def test_the_last_request_goes_through_gcs_from_server_to_sleeper(tmp_path, monkeypatch):
    """The recorder writes, and the sleeper reads, a real object (fake-gcs-server)."""
    from tests.support.gcs import FakeGcs

    gcs = FakeGcs(tmp_path / "gcs").start()
    try:
        gcs.create_bucket("bucket")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        url = ENV["LAST_REQUEST_OBJECT"]
        assert sleeper.read_last_request(url) is None, "nothing recorded yet"
        recorder = wake.LastRequestRecorder(url)
        recorder.touch()
        deadline = time.monotonic() + 10
        while (last := sleeper.read_last_request(url)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last is not None and abs((dt.datetime.now(dt.UTC) - last).total_seconds()) < 60
        assert gcs.read("bucket", "_deployer/last-request").decode().startswith("20")
    finally:
        gcs.stop()


# ----- the hooks, wired where the server and the client meet the wake --------------------------

IAP_AUDIENCE = "/projects/42/locations/us-central1/services/mlflow"


def _server_env(admin: FakeSqlAdmin) -> dict[str, str]:
    return {
        **_env_for(admin),
        "DB_USER": "mlflow",
        "DB_PASSWORD": "pw-Secret-123",
        "DB_NAME": "mlflow",
        "ARTIFACTS_DESTINATION": "gs://bucket/artifacts",
        "AUTH_MODE": "iap",
        "IAP_AUDIENCE": IAP_AUDIENCE,
    }


def _asleep(admin: FakeSqlAdmin) -> None:
    _api(admin).set_activation_policy("NEVER")
    admin.wait_idle()
    admin.patches.clear()


def test_only_verified_requests_reach_the_wake(admin, pg, monkeypatch):
    """iap_app.guard: IAP's check comes first, so an anonymous request neither wakes the
    database nor reaches MLflow; a verified one wakes it (503), then gets through as its member."""
    import asyncio
    from types import SimpleNamespace

    from deployer.server import iap_app, identity
    from tests.support.iap_keys import IapKeys

    monkeypatch.setattr(wake.AdminApi, "session", requests.Session())
    _asleep(admin)
    keys = IapKeys(IAP_AUDIENCE)
    settings = SimpleNamespace(
        iap_audience=IAP_AUDIENCE, iap_jwks_url=keys.jwks_url, admin_emails=frozenset()
    )
    reached: list = []

    async def mlflow_app(scope, receive, send):
        reached.append(identity.current())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = iap_app.guard(mlflow_app, settings, _env_for(admin))

    def call(headers: list) -> dict:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        path = "/api/2.0/mlflow/experiments/search"
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
        asyncio.run(app(scope, None, send))
        return sent[0]

    try:
        assert call([])["status"] == 401
        assert admin.patches == [] and reached == [], "an anonymous request woke the database"
        signed = [(b"x-goog-iap-jwt-assertion", keys.assertion("ana@example.com").encode())]
        waking = call(signed)
        assert waking["status"] == 503 and dict(waking["headers"])[b"retry-after"] == b"10"
        assert admin.patches == ["ALWAYS"] and reached == []
        admin.wait_idle()
        assert call(signed)["status"] == 200
        assert [m.email for m in reached] == ["ana@example.com"]
    finally:
        keys.close()


def test_the_entrypoint_migrates_after_the_wake_and_serves_without_waiting(admin, pg, monkeypatch):
    """entrypoint.migrate wakes a sleeping database and waits before migrating; serve asks it
    to wake and starts without the schema check (requests get 503 until it is up)."""
    from deployer.server import entrypoint

    monkeypatch.setattr(wake.AdminApi, "session", requests.Session())
    monkeypatch.setattr(wake, "RETRY_AFTER_SECONDS", 1)
    steps: list[str] = []
    monkeypatch.setattr(
        entrypoint,
        "upgrade_schema",
        lambda uri: (
            steps.append(f"migrate ({_api(admin).get()['settings']['activationPolicy']})")
            or ("a", "a")
        ),
    )
    monkeypatch.setattr(entrypoint, "wait_for_schema", lambda s: steps.append("schema check"))
    env = _server_env(admin)
    _asleep(admin)
    admin.start_delay = 0.5
    assert entrypoint.migrate(env) == 0
    assert admin.patches == ["ALWAYS"] and steps == ["migrate (ALWAYS)"]
    assert _db_answers(pg), "the migration ran once the database was up"
    _asleep(admin)
    steps.clear()
    argv, _ = entrypoint.prepare_serve(env)
    assert steps == [] and admin.patches == ["ALWAYS"] and "gunicorn" in argv
    admin.wait_idle()
    entrypoint.prepare_serve(env)
    assert steps == ["schema check"], "an awake database is checked as before"


def test_the_client_plugin_waits_out_the_wake(monkeypatch):
    """deployer-iap's auth object carries the Retry-After hook: a script that starts while the
    database sleeps gets its answer instead of a 503."""
    from deployer import mlflow_auth

    answers = iter([Response(503, "waking", headers={"Retry-After": "1"})] * 2)

    def handle(req: Request) -> Response:
        return next(answers, Response(200, {"ok": True}))

    server = LocalHttpServer(handle)
    monkeypatch.setenv("MLFLOW_WAKE_MAX_WAIT_SECONDS", "30")
    cache = type("Cache", (), {"get": lambda self: "tok", "invalidate": lambda self, t: None})()
    monkeypatch.setattr(mlflow_auth, "cache_for", lambda env=None: cache)
    try:
        auth = mlflow_auth.IapAuthProvider().get_auth()
        r = requests.get(server.url + "/api/2.0/mlflow/experiments/search", auth=auth, timeout=10)
        assert r.status_code == 200 and len(r.history) == 2
        monkeypatch.setenv("MLFLOW_WAKE_MAX_WAIT_SECONDS", "soon")
        with pytest.raises(mlflow_auth.TokenError, match="MLFLOW_WAKE_MAX_WAIT_SECONDS"):
            mlflow_auth.IapAuthProvider().get_auth()
    finally:
        server.close()


def test_domain_scoped_projects_are_understood_as_the_server_settings_understand_them():
    """settings.py accepts example.com:proj:REGION:INSTANCE; the wake must not refuse it."""
    assert wake.parse_connection_name("p-1:us-central1:db") == ("p-1", "db")
    assert wake.parse_connection_name("example.com:p-1:us-central1:db") == ("example.com:p-1", "db")
    with pytest.raises(ValueError, match="PROJECT:REGION:INSTANCE"):
        wake.parse_connection_name("p-1:db")
