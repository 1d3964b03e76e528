"""What `make bench` sends: a fixed dataset seeded on each server, and the load generators.

Every rate and search runs against the same data from its first run to its last. The dataset
is seeded once per database, after the idle memory reading and before any rate or search: more
experiments than one search page, and a full page of runs with params, metrics and tags in the
experiment runs/search reads. The rates log into runs made here and never create experiments.
(When each log_metric, log_batch and OTLP run made its own experiment, experiments/search went
from about 7 experiments a page to 50 over a 24-repeat run, and its figures followed the
repeat number rather than the servers.)

Searches run from separate processes, so the client's GIL is not the bottleneck.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

API = "/api/2.0/mlflow"
PAGE = 50  # max_results of every search
SEEDED_EXPERIMENTS = 60  # more than a page, so every experiments/search answers a full one
SEARCHED_RUNS = 60  # likewise for runs/search
RUN_FIELDS = 5  # params, metrics and tags on each searched run
BATCH_METRICS = 1000  # metrics a log_batch call (MLflow's limit a call)
SPANS_PER_REQUEST = 20  # spans an OTLP request
# Ours stamps every experiment and run with its author's verified email; stock, without auth,
# records whatever the client sends. The seed sends that author to both, and ours' IAP
# assertion names the same one (bench.run), so both hold the same rows.
AUTHOR = "bench@example.com"
AUTHOR_TAG = {"key": "mlflow.user", "value": AUTHOR}


@dataclass(frozen=True)
class Dataset:
    """The ids of one database's seeded data (the same for every server started on it)."""

    search_experiment: str  # SEARCHED_RUNS runs, what runs/search reads
    metric_run: str  # what log_metric logs into
    batch_run: str  # what log_batch logs into
    trace_experiment: str  # where OTLP spans land


def session(headers: dict[str, str]) -> requests.Session:
    s = requests.Session()
    s.headers.update(headers)
    return s


def _call(s: requests.Session, url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = s.post(f"{url}{API}/{path}", json=body, timeout=30)
    r.raise_for_status()
    return r.json()


def new_experiment(s: requests.Session, url: str, name: str) -> str:
    body = {"name": name, "tags": [AUTHOR_TAG]}
    return _call(s, url, "experiments/create", body)["experiment_id"]


def new_run(s: requests.Session, url: str, experiment_id: str) -> str:
    body = {"experiment_id": experiment_id, "user_id": AUTHOR, "tags": [AUTHOR_TAG]}
    return _call(s, url, "runs/create", body)["run"]["info"]["run_id"]


def _searched_run(s: requests.Session, url: str, experiment_id: str, i: int) -> None:
    run_id = new_run(s, url, experiment_id)
    ts = int(time.time() * 1000)
    body = {
        "run_id": run_id,
        "params": [{"key": f"p{k}", "value": f"{i * k}"} for k in range(RUN_FIELDS)],
        "metrics": [
            {"key": f"m{k}", "value": i / (k + 1), "timestamp": ts, "step": 0}
            for k in range(RUN_FIELDS)
        ],
        "tags": [{"key": f"t{k}", "value": f"run {i}"} for k in range(RUN_FIELDS)],
    }
    _call(s, url, "runs/log-batch", body)


def seed(url: str, headers: dict[str, str]) -> Dataset:
    """Seed the fixed dataset on a server's (empty) database; its ids."""
    s = session(headers)
    for i in range(SEEDED_EXPERIMENTS):
        new_experiment(s, url, f"bench-experiment-{i:03d}")
    searched = new_experiment(s, url, "bench-search")
    for i in range(SEARCHED_RUNS):
        _searched_run(s, url, searched, i)
    rates = new_experiment(s, url, "bench-rates")
    return Dataset(
        search_experiment=searched,
        metric_run=new_run(s, url, rates),
        batch_run=new_run(s, url, rates),
        trace_experiment=new_experiment(s, url, "bench-traces"),
    )


# A rate: (url, headers, dataset, seconds) -> operations per second.
Rate = Callable[[str, dict[str, str], Dataset, float], float]

# The next step of each run, carried from one call of a rate to the next: a training loop's
# steps only rise, and MLflow rewrites a run's latest_metrics row only for a higher step, so
# steps that restarted at 0 each run would skip that write in every run after the warm-up.
_steps: defaultdict[str, itertools.count] = defaultdict(itertools.count)


def log_metric_rate(url: str, headers: dict[str, str], data: Dataset, seconds: float) -> float:
    """Single client, kept-alive connection: log_metric calls per second."""
    s = session(headers)
    steps = _steps[data.metric_run]
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        step = next(steps)
        r = s.post(
            f"{url}{API}/runs/log-metric",
            timeout=30,
            json={
                "run_id": data.metric_run,
                "key": "loss",
                "value": 1.0 / (step + 1),
                "step": step,
                "timestamp": int(time.time() * 1000),
            },
        )
        r.raise_for_status()
        n += 1
    return n / (time.monotonic() - t0)


def log_batch_rate(url: str, headers: dict[str, str], data: Dataset, seconds: float) -> float:
    """log_batch with 1,000 metrics a call (10 keys, 100 new steps each): metrics per second."""
    s = session(headers)
    steps = _steps[data.batch_run]
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        ts, first = int(time.time() * 1000), 100 * next(steps)
        metrics = [
            {"key": f"m{i % 10}", "value": float(i), "timestamp": ts, "step": first + i // 10}
            for i in range(BATCH_METRICS)
        ]
        s.post(
            f"{url}{API}/runs/log-batch",
            json={"run_id": data.batch_run, "metrics": metrics},
            timeout=60,
        ).raise_for_status()
        n += BATCH_METRICS
    return n / (time.monotonic() - t0)


def _otlp_body(spans: int) -> bytes:
    """One trace of `spans` spans in OTLP/JSON, as an OpenTelemetry exporter sends it."""
    trace_id = os.urandom(16).hex()
    now = time.time_ns()
    items = [
        {
            "traceId": trace_id,
            "spanId": os.urandom(8).hex(),
            "name": f"step-{i}",
            "kind": 1,
            "startTimeUnixNano": str(now + i * 1000),
            "endTimeUnixNano": str(now + i * 1000 + 500),
            "attributes": [{"key": "input", "value": {"stringValue": f"question {i}"}}],
        }
        for i in range(spans)
    ]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": items}]}]}).encode()


def otlp_span_rate(url: str, headers: dict[str, str], data: Dataset, seconds: float) -> float:
    """OTLP span ingest (`/v1/traces`), 20 spans a request, one client kept alive: spans/s."""
    s = session(headers)
    s.headers.update(
        {"x-mlflow-experiment-id": data.trace_experiment, "content-type": "application/json"}
    )
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        body = _otlp_body(SPANS_PER_REQUEST)
        s.post(f"{url}/v1/traces", data=body, timeout=60).raise_for_status()
        n += SPANS_PER_REQUEST
    return n / (time.monotonic() - t0)


RATES: dict[str, Rate] = {
    "log_metric": log_metric_rate,
    "log_batch": log_batch_rate,
    "otlp_spans": otlp_span_rate,
}
# Operations in each unit a rate counts (metrics, spans, calls), for the server CPU a call.
OPS_PER_CALL = {"log_metric": 1, "log_batch": BATCH_METRICS, "otlp_spans": SPANS_PER_REQUEST}


def search_once(s: requests.Session, url: str, kind: str, data: Dataset) -> requests.Response:
    """One page of experiments/search or runs/search (`kind`) over the seeded data."""
    if kind == "experiments":
        return s.get(f"{url}{API}/experiments/search", params={"max_results": PAGE}, timeout=30)
    body = {"experiment_ids": [data.search_experiment], "max_results": PAGE}
    return s.post(f"{url}{API}/runs/search", json=body, timeout=30)


def _search_worker(args: tuple[str, dict[str, str], str, Dataset, float, mp.Queue]) -> None:
    url, headers, kind, data, seconds, out = args
    s = session(headers)
    latencies: list[float] = []
    errors = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        r = search_once(s, url, kind, data)
        latencies.append(time.perf_counter() - t0)
        errors += r.status_code != 200
    out.put((latencies, errors))


def concurrent_search(
    url: str, headers: dict[str, str], kind: str, data: Dataset, seconds: float, clients: int = 8
) -> tuple[dict[str, float], list[float]]:
    """8 clients searching for `seconds`: requests/s, p50 and p99 (ms) and errors; and every
    request's latency (ms), for percentiles pooled over runs."""
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_search_worker, args=((url, headers, kind, data, seconds, q),))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    figures = {
        "rps": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "errors": errors,
    }
    return figures, [1000 * x for x in latencies]
