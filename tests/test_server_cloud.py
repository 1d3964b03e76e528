"""The server as Cloud Run runs it: env only, PostgreSQL over a /cloudsql-style socket, a GCS
emulator, and IAP's signed header verified on every request."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mlflow
import psycopg2
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from mlflow import MlflowClient

from deployer.server.iap import MIN_REFRESH_SECONDS
from tests.support import jws
from tests.support.cloud_server import ADMIN_EMAIL, BUCKET, DB_PASSWORD, CloudStack, running_stack
from tests.support.iap_keys import IapKeys, iap_headers
from tests.support.processes import free_port, wait_healthy

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud")
    with running_stack(root) as (cloud, keys):
        yield cloud, keys, root


def tables(stack: CloudStack, db: str = "mlflow") -> set[str]:
    conn = stack.pg.connect("mlflow", DB_PASSWORD, db)
    try:
        with conn.cursor() as cur:
            cur.execute("select tablename from pg_tables where schemaname = 'public'")
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()


def run_entrypoint(stack: CloudStack, mode: str, **overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deployer.server", mode],
        env=stack.env(free_port(), **overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def served(stack):
    """migrate (the Cloud Run job), then serve (the service)."""
    cloud, _, root = stack
    # Before the migration job ran, `serve` refuses and creates nothing.
    refused = run_entrypoint(cloud, "serve")
    assert refused.returncode != 0
    assert "no MLflow tables yet" in refused.stderr and "migrat" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert tables(cloud) == set()

    first = run_entrypoint(cloud, "migrate")
    assert first.returncode == 0, first.stderr
    assert "schema migrated empty ->" in first.stdout
    again = run_entrypoint(cloud, "migrate")
    assert again.returncode == 0 and "nothing to do" in again.stdout

    proc, url = cloud.serve(root / "serve.log")
    yield proc, url
    proc.stop()


@pytest.fixture
def through_iap(stack, served):
    _, keys, _ = stack
    _, url = served
    with iap_headers(keys) as provider:
        mlflow.set_tracking_uri(url)
        try:
            yield MlflowClient(url), provider
        finally:
            mlflow.set_tracking_uri(None)


def test_password_with_uri_breaking_characters_connects(stack, served):
    cloud, _, _ = stack
    assert all(c in DB_PASSWORD for c in "@:/?#%&")
    assert "experiments" in tables(cloud)  # the migration reached the DB with that password


def test_health_needs_no_assertion(served):
    _, url = served
    assert requests.get(f"{url}/health", timeout=5).status_code == 200


def _search(url: str, assertion: str | None) -> requests.Response:
    headers = {} if assertion is None else {"x-goog-iap-jwt-assertion": assertion}
    return requests.get(
        f"{url}{API}/experiments/search", params={"max_results": 1}, headers=headers, timeout=10
    )


def _forged_none_alg(keys: IapKeys) -> str:
    good = keys.assertion()
    header = jws.b64url_encode(
        b'{"alg":"none","typ":"JWT","kid":"' + next(iter(keys.keys)).encode() + b'"}'
    )
    return f"{header}.{good.split('.')[1]}."


def _bad_signature(keys: IapKeys) -> str:
    h, p, s = keys.assertion().split(".")
    sig = bytearray(jws.b64url_decode(s))
    sig[5] ^= 0x01
    return f"{h}.{p}.{jws.b64url_encode(bytes(sig))}"


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("missing", lambda k: None),
        ("expired", lambda k: k.assertion(iat_offset=-7200, lifetime=600)),
        ("wrong audience", lambda k: k.assertion(audience="/projects/1/locations/x/services/y")),
        ("wrong issuer", lambda k: k.assertion(issuer="https://evil.example.com")),
        (
            "unknown key id",
            lambda k: k.assertion(kid="nope", key=ec.generate_private_key(ec.SECP256R1())),
        ),
        ("bad signature", _bad_signature),
        ("none algorithm", _forged_none_alg),
        ("garbage", lambda k: "not-a-jwt"),
    ],
)
def test_bad_assertions_get_401_and_reach_nothing(stack, served, case, make):
    cloud, keys, _ = stack
    _, url = served
    r = _search(url, make(keys))
    assert r.status_code == 401, (case, r.status_code, r.text)
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    # A write with the same bad assertion must not reach MLflow's database.
    name = f"should-not-exist-{case.replace(' ', '-')}"
    assertion = make(keys)
    headers = {} if assertion is None else {"x-goog-iap-jwt-assertion": assertion}
    w = requests.post(
        f"{url}{API}/experiments/create", json={"name": name}, headers=headers, timeout=10
    )
    assert w.status_code == 401
    conn = cloud.pg.connect("mlflow", DB_PASSWORD, "mlflow")
    with conn, conn.cursor() as cur:
        cur.execute("select count(*) from experiments where name = %s", (name,))
        assert cur.fetchone()[0] == 0
    conn.close()


def test_foreign_host_header_is_refused(stack, served):
    _, keys, _ = stack
    _, url = served
    headers = {"x-goog-iap-jwt-assertion": keys.assertion(), "Host": "evil.example.com"}
    r = requests.get(
        f"{url}{API}/experiments/search", params={"max_results": 1}, headers=headers, timeout=10
    )
    assert r.status_code == 403
    headers["Host"] = "mlflow-abc123-uc.a.run.app"
    r = requests.get(
        f"{url}{API}/experiments/search", params={"max_results": 1}, headers=headers, timeout=10
    )
    assert r.status_code == 200


def test_valid_assertion_passes_and_keys_are_cached(stack, served):
    _, keys, _ = stack
    _, url = served
    before = keys.fetches
    for _ in range(6):
        assert _search(url, keys.assertion()).status_code == 200
    # Two workers may each fetch once; never once per request.
    assert keys.fetches - before <= 2


def test_rotated_key_is_fetched_on_unknown_kid(stack, served):
    _, keys, _ = stack
    _, url = served
    kid = keys.rotate()
    before = keys.fetches
    # An unknown kid triggers a refetch, at most once per MIN_REFRESH_SECONDS per worker (an
    # earlier test's forged kid may have just used that slot).
    deadline = time.monotonic() + MIN_REFRESH_SECONDS + 3
    while (status := _search(url, keys.assertion(kid=kid)).status_code) != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert 1 <= keys.fetches - before <= 2


def test_identity_is_the_verified_email_whatever_the_client_claims(through_iap, stack):
    client, provider = through_iap
    provider.email = "bob@example.com"
    exp = client.create_experiment(f"who-{time.time_ns()}")
    run = client.create_run(exp, tags={"mlflow.user": "mallory"})
    got = client.get_run(run.info.run_id)
    assert got.info.user_id == "bob@example.com"
    assert got.data.tags["mlflow.user"] == "bob@example.com"
    client.set_tag(run.info.run_id, "mlflow.user", "mallory")
    assert client.get_run(run.info.run_id).data.tags["mlflow.user"] == "bob@example.com"

    name = f"model-{time.time_ns()}"
    client.create_registered_model(name, tags={"mlflow.user": "mallory"})
    assert client.get_registered_model(name).tags["mlflow.user"] == "bob@example.com"
    mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert client.get_model_version(name, mv.version).tags["mlflow.user"] == "bob@example.com"


def test_artifacts_go_to_the_bucket_through_the_server(through_iap, stack, tmp_path):
    cloud, _, _ = stack
    client, _ = through_iap
    payload = bytes(range(256)) * 4096
    src = tmp_path / "weights.bin"
    src.write_bytes(payload)
    exp = client.create_experiment(f"art-{time.time_ns()}")
    run = client.create_run(exp)
    client.log_artifact(run.info.run_id, str(src), "ckpt")
    objects = cloud.gcs.objects(BUCKET, "artifacts/")
    matches = [n for n in objects if n.endswith(f"{run.info.run_id}/artifacts/ckpt/weights.bin")]
    assert len(matches) == 1 and objects[matches[0]] == len(payload)
    back = client.download_artifacts(run.info.run_id, "ckpt/weights.bin", str(tmp_path))
    assert Path(back).read_bytes() == payload


def test_serve_refuses_an_outdated_schema(stack):
    cloud, _, _ = stack
    cloud.pg.create_database("mlflow_old", "mlflow_old", DB_PASSWORD)
    overrides = {"DB_NAME": "mlflow_old", "DB_USER": "mlflow_old"}
    assert run_entrypoint(cloud, "migrate", **overrides).returncode == 0
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    head = script.get_revision(script.get_current_head())
    conn = cloud.pg.connect("mlflow_old", DB_PASSWORD, "mlflow_old")
    with conn, conn.cursor() as cur:
        cur.execute("update alembic_version set version_num = %s", (head.down_revision,))
    conn.close()

    result = run_entrypoint(cloud, "serve", **overrides)
    assert result.returncode != 0
    assert f"schema is at {head.down_revision}" in result.stderr
    assert "migration" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"DB_NAME": "<unset>"}, "DB_NAME is not set"),
        ({"CLOUD_SQL_CONNECTION_NAME": "not-a-connection"}, "CLOUD_SQL_CONNECTION_NAME"),
        ({"IAP_AUDIENCE": "<unset>"}, "IAP_AUDIENCE is not set"),
        ({"PORT": "eighty"}, "PORT='eighty' is not a whole number"),
        ({"ARTIFACTS_DESTINATION": "s3://elsewhere"}, "ARTIFACTS_DESTINATION"),
        ({"ALLOWED_HOSTS": "https://mlflow.example.com/"}, "ALLOWED_HOSTS"),
        ({"MAX_INSTANCES": "40", "DB_MAX_CONNECTIONS": "25"}, "lower max instances"),
        ({"AUTH_MODE": "<unset>"}, "AUTH_MODE is not set"),
    ],
)
def test_bad_settings_stop_at_once_with_one_line(stack, overrides, needle):
    cloud, _, _ = stack
    for mode in ("serve", "migrate"):
        result = run_entrypoint(cloud, mode, **overrides)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], result.stderr


def test_wrong_database_password_is_one_line(stack):
    cloud, _, _ = stack
    result = run_entrypoint(cloud, "serve", DB_PASSWORD="wrong")
    assert result.returncode == 2
    assert "password authentication failed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(psycopg2.OperationalError):
        cloud.pg.connect("mlflow", "wrong", "mlflow")


def test_pool_is_sized_to_the_connection_cap(served):
    proc, _ = served
    # DB_MAX_CONNECTIONS=50, 5 reserved, MAX_INSTANCES=2, 2 workers (+ the parent process):
    # (50 - 5) // (2 x 3 x 2 engines) = 3 connections per engine -> pool 2 + overflow 1.
    assert "'pool_size': 2, 'max_overflow': 1" in proc.output()


# ----- authorship: every forged identity is recorded as the verified member, or refused -------
BOB = "bob@example.com"
MALLORY = [{"key": "mlflow.user", "value": "mallory"}]


class Api:
    """Raw REST calls as one verified member, each with a fresh IAP assertion."""

    def __init__(self, url: str, keys: IapKeys, email: str, prefix: str = API) -> None:
        self.url, self.keys, self.email, self.prefix = url, keys, email, prefix

    def _headers(self) -> dict[str, str]:
        return {
            "x-goog-iap-jwt-assertion": self.keys.assertion(self.email),
            "Content-Type": "application/json",
        }

    def call(self, method: str, path: str, body=None, *, as_string: bool = False, **params):
        data = None
        if body is not None:
            # A JSON body that is itself a JSON string: MLflow decodes it a second time.
            data = json.dumps(json.dumps(body) if as_string else body)
        return requests.request(
            method,
            f"{self.url}{self.prefix}/{path}",
            data=data,
            params=params or None,
            headers=self._headers(),
            timeout=30,
        )

    def ok(self, method: str, path: str, body=None, **kw):
        r = self.call(method, path, body, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()


def _tags(entity: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in entity.get("tags", [])}


@pytest.fixture
def apis(stack, served):
    _, keys, _ = stack
    _, url = served
    return {
        "bob": Api(url, keys, BOB),
        "bob-ajax": Api(url, keys, BOB, "/ajax-api/2.0/mlflow"),
        "admin": Api(url, keys, ADMIN_EMAIL),
    }


@pytest.fixture
def experiment(apis):
    return apis["bob"].ok("POST", "experiments/create", {"name": f"e-{time.time_ns()}"})[
        "experiment_id"
    ]


@pytest.mark.parametrize("api", ["bob", "bob-ajax"])
@pytest.mark.parametrize("as_string", [False, True], ids=["json", "json-in-a-string"])
def test_runs_carry_the_verified_member_however_the_body_is_encoded(
    apis, experiment, api, as_string
):
    bob = apis[api]
    body = {"experiment_id": experiment, "user_id": "mallory", "tags": MALLORY}
    run = bob.ok("POST", "runs/create", body, as_string=as_string)["run"]
    run_id = run["info"]["run_id"]
    assert run["info"]["user_id"] == BOB and _tags(run["data"])["mlflow.user"] == BOB
    bob.ok("POST", "runs/set-tag", {"run_id": run_id, **MALLORY[0]}, as_string=as_string)
    bob.ok("POST", "runs/log-batch", {"run_id": run_id, "tags": MALLORY}, as_string=as_string)
    r = bob.call("POST", "runs/delete-tag", {"run_id": run_id, "key": "mlflow.user"})
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    got = bob.ok("GET", "runs/get", run_id=run_id)["run"]
    assert got["info"]["user_id"] == BOB and _tags(got["data"])["mlflow.user"] == BOB


@pytest.mark.parametrize("as_string", [False, True], ids=["json", "json-in-a-string"])
def test_models_and_versions_carry_the_verified_member(apis, experiment, as_string):
    bob = apis["bob"]
    name = f"m-{time.time_ns()}"
    bob.ok("POST", "registered-models/create", {"name": name, "tags": MALLORY}, as_string=as_string)
    bob.ok("POST", "registered-models/set-tag", {"name": name, **MALLORY[0]}, as_string=as_string)
    r = bob.call("DELETE", "registered-models/delete-tag", {"name": name, "key": "mlflow.user"})
    assert r.status_code == 403
    model = bob.ok("GET", "registered-models/get", name=name)["registered_model"]
    assert _tags(model)["mlflow.user"] == BOB

    run_id = bob.ok("POST", "runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"]
    body = {"name": name, "source": f"runs:/{run_id}/m", "run_id": run_id, "tags": MALLORY}
    version = bob.ok("POST", "model-versions/create", body, as_string=as_string)
    v = version["model_version"]["version"]
    bob.ok("POST", "model-versions/set-tag", {"name": name, "version": v, **MALLORY[0]})
    got = bob.ok("GET", "model-versions/get", name=name, version=v)["model_version"]
    assert _tags(got)["mlflow.user"] == BOB


def test_logged_models_experiments_and_traces_carry_the_verified_member(
    apis, experiment, through_iap
):
    bob = apis["bob"]
    body = {"experiment_id": experiment, "name": "lm", "tags": MALLORY}
    model = bob.ok("POST", "logged-models", body, as_string=True)["model"]
    model_id = model["info"]["model_id"]
    assert _tags(model["info"])["mlflow.user"] == BOB
    bob.ok("PATCH", f"logged-models/{model_id}/tags", {"tags": MALLORY})
    got = bob.ok("GET", f"logged-models/{model_id}")["model"]["info"]
    assert _tags(got)["mlflow.user"] == BOB

    name = f"tagged-{time.time_ns()}"
    exp = bob.ok("POST", "experiments/create", {"name": name, "tags": MALLORY}, as_string=True)
    eid = exp["experiment_id"]
    bob.ok("POST", "experiments/set-experiment-tag", {"experiment_id": eid, **MALLORY[0]})
    got = bob.ok("GET", "experiments/get", experiment_id=eid)["experiment"]
    assert _tags(got)["mlflow.user"] == BOB

    from mlflow.entities import TraceInfo, TraceLocation, TraceState

    client, provider = through_iap
    provider.email = BOB
    store = client._tracking_client.store
    trace_id = f"tr-{uuid.uuid4().hex}"
    store.start_trace(
        TraceInfo(
            trace_id=trace_id,
            trace_location=TraceLocation.from_experiment_id(experiment),
            request_time=int(time.time() * 1000),
            state=TraceState.OK,
            trace_metadata={"mlflow.trace.user": "mallory"},
        )
    )
    assert store.get_trace_info(trace_id).trace_metadata["mlflow.trace.user"] == BOB


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'"just text"', b"42", b'"[1]"'], ids=["list", "string", "number", "x2"]
)
def test_a_body_that_is_not_a_json_object_is_400(apis, body):
    bob = apis["bob"]
    r = requests.post(f"{bob.url}{API}/runs/create", data=body, headers=bob._headers(), timeout=30)
    assert r.status_code == 400, r.text
    assert "JSON object" in r.json()["message"]


def test_api_bodies_are_capped(apis, experiment):
    bob = apis["bob"]
    tag = {"key": "big", "value": "x" * 1000}
    body = json.dumps({"experiment_id": experiment, "tags": [tag] * 34_000}).encode()
    assert len(body) > 32 * 1024 * 1024
    r = requests.post(f"{bob.url}{API}/runs/create", data=body, headers=bob._headers(), timeout=60)
    assert r.status_code == 413, r.text[:200]


def test_artifact_location_must_stay_under_the_deployments_root(apis):
    bob = apis["bob"]
    for outside in (
        "gs://someone-elses-bucket/x",
        f"gs://{BUCKET}/elsewhere",
        f"gs://{BUCKET}/artifacts/../elsewhere",
        "file:///etc",
        "/var/lib/elsewhere",
    ):
        body = {"name": f"loc-{time.time_ns()}", "artifact_location": outside}
        r = bob.call("POST", "experiments/create", body)
        assert r.status_code == 400 and "outside" in r.json()["message"], (outside, r.text)
    inside = {"name": f"loc-{time.time_ns()}", "artifact_location": f"gs://{BUCKET}/artifacts/t"}
    bob.ok("POST", "experiments/create", inside)


def test_destructive_calls_are_for_admins_only(apis, experiment):
    bob, admin = apis["bob"], apis["admin"]
    name = f"del-{time.time_ns()}"
    bob.ok("POST", "registered-models/create", {"name": name})
    run_id = bob.ok("POST", "runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"]
    body = {"name": name, "source": f"runs:/{run_id}/m", "run_id": run_id}
    v = bob.ok("POST", "model-versions/create", body)["model_version"]["version"]
    hook = {
        "name": "h",
        "url": "https://hooks.example.com/x",
        "events": [{"entity": "REGISTERED_MODEL", "action": "CREATED"}],
    }
    refused = [
        bob.call("DELETE", "model-versions/delete", {"name": name, "version": v}),
        bob.call("DELETE", "registered-models/delete", {"name": name}),
        bob.call("POST", "experiments/delete", {"experiment_id": experiment}),
        bob.call("POST", "webhooks", hook),
    ]
    for r in refused:
        assert r.status_code == 403, (r.request.url, r.status_code, r.text)
        assert "admins" in r.json()["message"]
    # Members keep creating and reading; the admin may delete.
    assert bob.ok("GET", "registered-models/get", name=name)
    admin.ok("DELETE", "model-versions/delete", {"name": name, "version": v})
    admin.ok("DELETE", "registered-models/delete", {"name": name})
    admin.ok("POST", "experiments/delete", {"experiment_id": experiment})


def test_prompts_carry_the_verified_member(apis, through_iap):
    _, provider = through_iap
    provider.email = BOB
    name = f"prompt-{time.time_ns()}"
    mlflow.genai.register_prompt(
        name=name, template="Summarise {{text}}", tags={"mlflow.user": "mallory"}
    )
    prompt = apis["bob"].ok("GET", "registered-models/get", name=name)["registered_model"]
    assert _tags(prompt)["mlflow.user"] == BOB
    version = apis["bob"].ok("GET", "model-versions/get", name=name, version="1")
    assert _tags(version["model_version"])["mlflow.user"] == BOB


# ----- MLflow's FastAPI-only routes, served behind the same check ------------------------------


def test_traces_go_in_through_otlp_and_are_found_by_their_text(through_iap, served):
    """Under a Flask-only server /v1/traces is 404 and the client silently stores the spans
    as an artifact instead, so `trace.text` search finds nothing."""
    client, _ = through_iap
    proc, _ = served
    exp = client.create_experiment(f"traces-{time.time_ns()}")
    mlflow.set_experiment(experiment_id=exp)
    needle = f"needle-{time.time_ns()}"
    with mlflow.start_span("answer") as span:
        span.set_inputs({"question": needle})
    mlflow.flush_trace_async_logging()
    found = client.search_traces(locations=[exp], filter_string=f"trace.text LIKE '%{needle}%'")
    assert [t.info.trace_id for t in found] == [span.trace_id]
    assert '"POST /v1/traces HTTP/1.1" 200' in proc.output()
    trace = client.get_trace(span.trace_id)
    assert [s.name for s in trace.data.spans] == ["answer"]


def test_spans_sent_over_otlp_carry_the_verified_member(apis, experiment):
    """OTLP ingest (`POST /v1/traces`, FastAPI-only) creates the trace from the spans: the
    `user.id` a span claims must not become the trace's `mlflow.trace.user`."""
    bob = apis["bob"]
    trace_hex, now = uuid.uuid4().hex, time.time_ns()
    span = {
        "traceId": trace_hex,
        "spanId": uuid.uuid4().hex[:16],
        "name": "forged",
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1_000_000),
        "attributes": [
            {"key": "user.id", "value": {"stringValue": '"mallory"'}},
            {"key": "mlflow.trace.user", "value": {"stringValue": '"mallory"'}},
        ],
    }
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    r = requests.post(
        f"{bob.url}/v1/traces",
        json=body,
        headers={
            "x-goog-iap-jwt-assertion": bob.keys.assertion(BOB),
            "x-mlflow-experiment-id": experiment,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    v3 = Api(bob.url, bob.keys, BOB, "/api/3.0/mlflow")
    info = v3.ok("GET", f"traces/tr-{trace_hex}")["trace"]["trace_info"]
    assert info["trace_metadata"]["mlflow.trace.user"] == BOB, info


def test_legacy_v2_traces_carry_the_verified_member(apis, experiment):
    bob = apis["bob"]
    forged = [{"key": "mlflow.trace.user", "value": "mallory"}]
    body = {"experiment_id": experiment, "timestamp_ms": int(time.time() * 1000)}
    started = bob.ok("POST", "traces", {**body, "request_metadata": forged, "tags": []})
    request_id = started["trace_info"]["request_id"]
    end = {"timestamp_ms": int(time.time() * 1000), "status": "OK", "request_metadata": forged}
    bob.ok("PATCH", f"traces/{request_id}", {**end, "tags": []})
    info = bob.ok("GET", f"traces/{request_id}/info")["trace_info"]
    assert {m["key"]: m["value"] for m in info["request_metadata"]}["mlflow.trace.user"] == BOB


@pytest.mark.parametrize(
    "path",
    ["/v1/traces", "/ajax-api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/assistant/config"],
)
def test_fastapi_routes_need_the_assertion_too(stack, served, path):
    _, keys, _ = stack
    _, url = served
    method = "POST" if path == "/v1/traces" else "GET"
    r = requests.request(method, url + path, timeout=10)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    headers = {"x-goog-iap-jwt-assertion": keys.assertion()}
    assert requests.request(method, url + path, headers=headers, timeout=10).status_code != 401


def test_a_client_cannot_claim_the_verified_identity_header(stack, served):
    _, keys, _ = stack
    _, url = served
    headers = {
        "x-goog-iap-jwt-assertion": keys.assertion("carol@example.com"),
        "x-deployer-verified-email": "mallory@example.com",
    }
    exp = requests.post(
        f"{url}{API}/experiments/create",
        json={"name": f"spoof-{time.time_ns()}"},
        headers=headers,
        timeout=10,
    ).json()["experiment_id"]
    run = requests.post(
        f"{url}{API}/runs/create", json={"experiment_id": exp}, headers=headers, timeout=10
    ).json()["run"]
    assert run["info"]["user_id"] == "carol@example.com"


def test_charts_over_100_runs_fetch_their_history_in_one_request(through_iap, stack, served):
    """The UI asks for 100 runs' metrics per GET (~4.2 KB request line): gunicorn's default
    4094-byte limit answered 400, so run-comparison charts over ~96 runs failed."""
    client, _ = through_iap
    _, keys, _ = stack
    _, url = served
    exp = client.create_experiment(f"charts-{time.time_ns()}")
    run_ids = []
    for step in range(100):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
        run_ids.append(run.info.run_id)
    query = "&".join(f"run_ids={r}" for r in run_ids) + "&metric_key=loss&max_results=320"
    path = f"/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{query}"
    assert len(f"GET {path} HTTP/1.1") > 4094
    headers = {"x-goog-iap-jwt-assertion": keys.assertion()}
    r = requests.get(url + path, headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert {m["run_id"] for m in r.json()["metrics"]} == set(run_ids)


def test_the_ui_is_told_telemetry_is_off(stack, served):
    _, keys, _ = stack
    _, url = served
    headers = {"x-goog-iap-jwt-assertion": keys.assertion()}
    r = requests.get(f"{url}/ajax-api/3.0/mlflow/ui-telemetry", headers=headers, timeout=10)
    assert r.status_code == 200 and r.json()["disable_ui_telemetry"] is True


def test_serve_waits_for_a_database_that_connects_late(stack, served, tmp_path):
    """Direct VPC egress can take a minute or more to connect at instance start: serve retries
    instead of exiting (and crash-looping) on the first refused connection."""
    cloud, _, _ = stack
    late_root = Path(tempfile.mkdtemp(prefix="late-", dir="/tmp"))  # socket paths max 107 bytes
    port = free_port()
    env = cloud.env(port, CLOUD_SQL_SOCKET_ROOT=str(late_root), DB_WAIT_SECONDS="90")
    proc = cloud.entrypoint("serve", env, tmp_path / "late.log")
    try:
        proc.wait_for_text("database not reachable yet", timeout=60)
        time.sleep(2)
        assert proc.popen.poll() is None, proc.output()
        (late_root / cloud.pg.connection_name).symlink_to(cloud.pg.socket_dir)
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
    finally:
        proc.stop()
