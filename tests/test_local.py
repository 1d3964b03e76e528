"""`deployer local`: the real server on one machine, through the CLI a person uses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient

from tests.conftest import REPO, console_script
from tests.support.processes import Proc, base_env, free_port, start

BANNER = "MLflow is running at"


def start_local(data_dir: Path, port: int, log: Path, *extra: str) -> Proc:
    proc = start(
        [
            console_script("deployer"),
            "local",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            *extra,
        ],
        env=base_env(),
        log=log,
    )
    proc.wait_for_text(BANNER, timeout=90)
    return proc


def client_env(url: str, data_dir: Path) -> dict[str, str]:
    password = (data_dir / "secrets" / "admin-password").read_text().strip()
    return {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": password,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("local") / "data"
    port = free_port()
    log = data_dir.parent / "server.log"
    proc = start_local(data_dir, port, log)
    yield proc, f"http://127.0.0.1:{port}", data_dir
    proc.stop()


@pytest.fixture
def as_admin(server, monkeypatch):
    _, url, data_dir = server
    for k, v in client_env(url, data_dir).items():
        monkeypatch.setenv(k, v)
    mlflow.set_tracking_uri(url)
    yield MlflowClient(url)
    mlflow.set_tracking_uri(None)


def test_first_start_prints_paste_lines_and_keeps_secrets_private(server):
    proc, url, data_dir = server
    out = proc.output()
    password = (data_dir / "secrets" / "admin-password").read_text().strip()
    assert f"export MLFLOW_TRACKING_URI={url}" in out
    assert "export MLFLOW_TRACKING_USERNAME=admin" in out
    assert (
        f'export MLFLOW_TRACKING_PASSWORD="$(cat {data_dir.resolve()}/secrets/admin-password)"'
        in out
    )
    # The one-time hint is the only place the password is ever printed.
    assert out.count(password) == 1
    for name in ("admin-password", "flask-secret-key"):
        assert stat.S_IMODE((data_dir / "secrets" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "secrets").stat().st_mode) == 0o700
    assert (data_dir / "auth.db").exists() and (data_dir / "mlflow.db").exists()
    # Runs and the password database are the user's alone.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("mlflow.db", "auth.db"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name


def test_anonymous_and_wrong_password_get_401(server):
    _, url, _ = server
    api = f"{url}/api/2.0/mlflow/experiments/search"
    assert requests.get(api, params={"max_results": 1}, timeout=10).status_code == 401
    bad = requests.get(
        api, params={"max_results": 1}, auth=("admin", "not-the-password"), timeout=10
    )
    assert bad.status_code == 401
    assert requests.get(f"{url}/health", timeout=10).status_code == 200


def test_right_password_logs_and_reads_back(as_admin):
    mlflow.set_experiment("readback")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
        for step, value in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("loss", value, step=step)
    got = as_admin.get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.1"}
    history = as_admin.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.25)]


def test_artifacts_round_trip_byte_for_byte(as_admin, server, tmp_path):
    _, _, data_dir = server
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    mlflow.set_experiment("artifacts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src), artifact_path="raw")
    # Proxied: the client sent it to the server, which stored it in the data folder.
    stored = list((data_dir / "artifacts").rglob("blob.bin"))
    assert len(stored) == 1 and stored[0].read_bytes() == payload
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="raw/blob.bin", dst_path=str(tmp_path / "dl")
    )
    assert Path(back).read_bytes() == payload
    assert as_admin.get_run(run.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")


def test_example_script_end_to_end(server, as_admin):
    _, url, data_dir = server
    env = {**base_env(), **client_env(url, data_dir)}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "track_experiment.py"),
            "--epochs",
            "5",
            "--model",
            "example-model",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    version = as_admin.get_model_version_by_alias("example-model", "champion")
    run = as_admin.get_run(version.run_id)
    assert run.data.params["epochs"] == "5"
    assert len(as_admin.get_metric_history(run.info.run_id, "test_accuracy")) == 5
    names = [a.path for a in as_admin.list_artifacts(run.info.run_id, "reports")]
    assert names == ["reports/report.json"]
    model = mlflow.pyfunc.load_model("models:/example-model@champion")
    assert len(model.predict(np.array([[5.1, 3.5, 1.4, 0.2]]))) == 1


def test_ctrl_c_stops_cleanly_and_restart_keeps_runs(tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_local(data_dir, port, tmp_path / "first.log")
    env = client_env(url, data_dir)
    os.environ.update(env)
    try:
        mlflow.set_tracking_uri(url)
        mlflow.set_experiment("survives-restart")
        with mlflow.start_run() as run:
            mlflow.log_metric("m", 1.0)
        first.signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        assert first.popen.wait(30) == 0
        assert "Stopped" in first.output()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=2)

        second = start_local(data_dir, port, tmp_path / "second.log")
        try:
            out = second.output()
            assert env["MLFLOW_TRACKING_PASSWORD"] not in out  # the hint was for the first start
            assert "password in" in out
            got = MlflowClient(url).get_run(run.info.run_id)
            assert got.data.metrics == {"m": 1.0}
        finally:
            assert second.stop() == 0
    finally:
        for k in env:
            os.environ.pop(k, None)
        mlflow.set_tracking_uri(None)


def test_all_interfaces_keep_auth_on(tmp_path):
    port = free_port()
    proc = start_local(tmp_path / "data", port, tmp_path / "log", "--host", "0.0.0.0")
    try:
        r = requests.get(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            timeout=10,
        )
        assert r.status_code == 401
        assert "Basic auth stays on" in proc.output()
    finally:
        proc.stop()


def run_local_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("deployer"), "local", *args],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_local_cli("--data-dir", str(tmp_path / "d"), "--port", str(port))
    assert_one_line_error(result, f"port {port}", "already in use", "--port")


def test_unwritable_data_dir_is_one_clear_line(tmp_path):
    # /sys refuses new folders even to root, which ignores file permissions.
    result = run_local_cli("--data-dir", "/sys/mlflow-data", "--port", str(free_port()))
    assert_one_line_error(result, "/sys/mlflow-data", "not writable", "--data-dir")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_local_cli("--data-dir", str(blocker), "--port", str(free_port()))
    assert_one_line_error(result, "is a file", "--data-dir")


@pytest.mark.parametrize(
    ("relative", "content", "needle"),
    [
        ("mlflow.db", b"this is not a database" * 100, "not a readable SQLite database"),
        ("auth.db", b"\x00garbage" * 100, "not a readable SQLite database"),
        ("secrets/admin-password", b"", "empty or corrupt"),
        ("secrets/flask-secret-key", b"\xff\xfe not ascii", "empty or corrupt"),
    ],
)
def test_corrupt_data_dir_is_one_clear_line(tmp_path, relative, content, needle):
    data_dir = tmp_path / "data"
    target = data_dir / relative
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    result = run_local_cli("--data-dir", str(data_dir), "--port", str(free_port()))
    assert_one_line_error(result, needle, relative.split("/")[-1])
    # Nothing the user had was touched.
    assert target.read_bytes() == content
    assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before


# ----- the server always goes down with `deployer local` ---------------------------------------


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root.pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _all_gone(pids: list[int], timeout: float = 30) -> list[int]:
    import psutil

    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _deployer_local_under_shell(tmp_path: Path, port: int, pipeline: str) -> Proc:
    """`deployer local` started by a shell in its own session, as a terminal would start it."""
    argv = f"{console_script('deployer')} local --data-dir {tmp_path / 'data'} --port {port}"
    return start(
        ["sh", "-c", pipeline.format(argv=argv, log=tmp_path / "tee.log")],
        env=base_env(),
        log=tmp_path / "sh.log",
    )


def _wait_started(proc: Proc, tmp_path: Path, port: int) -> list[int]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        logs = [tmp_path / "tee.log", proc.log]
        if any(p.exists() and BANNER in p.read_text(errors="replace") for p in logs):
            break
        time.sleep(0.2)
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    return _tree(proc.popen.pid)


@pytest.mark.parametrize(
    "how",
    ["SIGTERM", "SIGHUP", "closed pipe then Ctrl-C", "deployer killed", "its parent killed"],
)
def test_the_server_goes_down_with_deployer_local(tmp_path, how):
    import psutil

    port = free_port()
    pipeline = "{argv} 2>&1 | tee {log}" if how == "closed pipe then Ctrl-C" else "{argv} & wait"
    shell = _deployer_local_under_shell(tmp_path, port, pipeline)
    try:
        everything = _wait_started(shell, tmp_path, port)
        launcher = [console_script("deployer"), "local"]
        deployer = next(p for p in everything if psutil.Process(p).cmdline()[1:3] == launcher)
        if how in ("SIGTERM", "SIGHUP"):
            os.kill(deployer, getattr(signal, how))
        elif how == "closed pipe then Ctrl-C":
            tee = next(p for p in everything if psutil.Process(p).name() == "tee")
            os.kill(tee, signal.SIGKILL)
            time.sleep(0.5)
            shell.signal(signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
        elif how == "deployer killed":
            os.kill(deployer, signal.SIGKILL)  # no handler runs: the watchdog must act
        else:
            os.kill(shell.popen.pid, signal.SIGKILL)  # make or the shell dies under it
        server = [p for p in everything if p not in (deployer, shell.popen.pid)]
        assert _all_gone(server) == [], f"{how}: still running: {server}"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        for pid in _tree(shell.popen.pid):
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
