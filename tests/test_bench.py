"""bench/run.py's own arithmetic and waiting (paired ratios, pooled percentiles, settle()),
and bench/workload.py's promise that the data every measure sees holds still."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench import run
from bench.run import QUICK, Samples, median_interval, ratio_row, render, settle
from bench.workload import API, PAGE, RATES, SEEDED_EXPERIMENTS, Dataset, search_once, seed, session
from tests.support.cloud_server import migrate_and_serve
from tests.support.processes import base_env, free_port, wait_healthy


def test_the_spread_is_of_the_per_run_ratios_not_of_each_side():
    """A machine twice as slow in one run halves both sides of it: the ratio holds, and so
    must the spread (each side alone swings by half its median)."""
    ours, stock = Samples(), Samples()
    for fast in (1.0, 0.5, 1.0):
        ours.add("rate", 300 * fast)
        stock.add("rate", 100 * fast)
    assert ours.spread("rate") == pytest.approx(0.5)
    assert ours.paired_spread(stock, "rate") == pytest.approx(0.0)
    stock.add("rate", 50)  # unpaired: no paired spread
    assert ours.paired_spread(stock, "rate") is None


def test_the_ratio_is_the_median_of_the_runs_own_ratios():
    """Three runs in turns, the machine slowing down through them: each run's ratio is 3, 3,
    4; the ratio of the two medians (160 / 40) would say 4."""
    ours, stock = Samples(), Samples()
    for o, s in ((300, 100), (160, 40), (90, 30)):
        ours.add("rate", o)
        stock.add("rate", s)
    row = ratio_row(("rate", "rate", "calls/s", ">= 3.5x", True, 3.5), ours, stock)
    assert (row.ours, row.stock) == (160, 40)
    assert row.ratio == pytest.approx(3.0)
    assert row.met is False


def test_the_median_s_interval_is_the_sign_test_s():
    """24 runs: the 95% interval of the median runs from the 7th smallest to the 7th largest
    (P(Binomial(24, 1/2) < 7) = 1.1%, < 8 is 3.2%); 6 to 8 runs get their whole range, 9 the
    2nd to the 8th; 5 runs are too few for 95% (the whole range covers 93.75%). One wild run
    out of 24 moves the spread, not the interval."""
    runs = [float(x) for x in range(1, 25)]
    assert median_interval(runs) == (7.0, 18.0)
    assert median_interval(runs[:8]) == (1.0, 8.0)
    assert median_interval(runs[:9]) == (2.0, 8.0)
    assert median_interval(runs[:6]) == (1.0, 6.0)
    assert median_interval(runs[:5]) is None
    ours, stock = Samples(), Samples()
    for r in [*[3.0] * 11, *[3.1] * 12, 30.0]:
        ours.add("rate", r)
        stock.add("rate", 1.0)
    row = ratio_row(("rate", "rate", "calls/s", "", True, None), ours, stock)
    assert row.ci == pytest.approx(0.1 / 3.1)
    assert row.spread == pytest.approx(27 / 3.1)
    assert "| 3.10x | ±3% | 871% |" in render([row], [])


def test_a_run_says_on_stderr_which_step_it_is_on(monkeypatch, capsys):
    # A full run lasts about 35 minutes and prints its table only at the end, on stdout: each
    # step says so as it begins, on stderr, so the table stays clean to pipe.
    monkeypatch.setattr(run, "one_rate", lambda *args: None)
    run.measure_in_turns({"stock": None, "ours": None}, QUICK, {"stock": None, "ours": None})
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 + QUICK.repeats
    assert re.match(r"bench \d\d:\d\d  warm-up", lines[0]), lines[0]
    assert lines[-1].endswith(f"run {QUICK.repeats} of {QUICK.repeats} on each server")


def test_percentiles_are_of_every_request_pooled():
    """Each run's own p99 is 10 ms, but the two slowest of 100 requests pooled took 50 and
    60 ms: the pooled p99 is 60 ms, and the p50 stays 1 ms."""
    ours, stock = Samples(), Samples()
    for side in (ours, stock):
        for _ in range(2):
            side.add("search_p50_ms", 1)
            side.add("search_p99_ms", 10)
        side.values["search_latencies"] = [1.0] * 98 + [50.0, 60.0]
    stock.values["search_latencies"] = [2.0] * 100
    row = ratio_row(("p99", "search_p99_ms", "ms", "<= 0.5x", False, 0.5), ours, stock)
    assert (row.ours, row.stock, row.ratio) == (60.0, 2.0, 30.0)
    p50 = ratio_row(("p50", "search_p50_ms", "ms", "", False, None), ours, stock)
    assert (p50.ours, p50.stock) == (1.0, 2.0)


def test_settle_returns_once_idle_and_refuses_a_busy_server():
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert settle(idle.pid, timeout=10, window=0.2) < 5
        with pytest.raises(RuntimeError, match="still busy"):
            settle(busy.pid, timeout=1.5, window=0.2)
    finally:
        idle.kill()
        busy.kill()


@pytest.fixture
def bare_server(tmp_path):
    """Our entrypoint on a migrated SQLite file, auth off (the bench's load, not its IAP)."""
    port = free_port()
    env = base_env() | {
        "PORT": str(port),
        "SERVER_HOST": "127.0.0.1",
        "AUTH_MODE": "none",
        "BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
    }
    proc = migrate_and_serve(env, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.stop()


def _pages(url: str, data: Dataset) -> tuple[int, int, int]:
    """How many experiments and runs a search page answers, and experiments in all."""
    s = session({})
    experiments = search_once(s, url, "experiments", data).json()["experiments"]
    runs = search_once(s, url, "runs", data).json()["runs"]
    every = s.get(f"{url}{API}/experiments/search", params={"max_results": 1000})
    return len(experiments), len(runs), len(every.json()["experiments"])


def _latest_steps(url: str, data: Dataset) -> list[int]:
    """The latest step of each metric the rates logged (MLflow's latest_metrics rows)."""
    s = session({})
    steps = []
    for run_id in (data.metric_run, data.batch_run):
        got = s.get(f"{url}{API}/runs/get", params={"run_id": run_id}).json()
        steps += [m["step"] for m in got["run"]["data"].get("metrics", [])]
    return steps


def test_the_rates_leave_the_searched_data_as_seeded(bare_server):
    """Every rate, run twice, adds no experiment and no searched run: the searches answer the
    same full pages from the first repeat to the last (a rate that made its own experiment
    each run grew experiments/search's page through the bench, repeat by repeat). And each
    run of a rate logs steps above the last one's, as training does, so every call still
    moves the run's latest metrics."""
    data = seed(bare_server, {})
    before = _pages(bare_server, data)
    assert before[:2] == (PAGE, PAGE)
    assert before[2] > SEEDED_EXPERIMENTS
    latest: list[list[int]] = []
    for _ in range(2):
        for rate in RATES.values():
            assert rate(bare_server, {}, data, 0.3) > 0
        latest.append(_latest_steps(bare_server, data))
    assert _pages(bare_server, data) == before
    assert len(latest[1]) == 11  # loss, and log_batch's m0..m9
    assert all(b > a for a, b in zip(*latest, strict=True))
