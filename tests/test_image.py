"""image/: the Dockerfile passes hadolint and our rules, and the same install runs the server.

No Docker engine runs here, so the install the Dockerfile performs (image/install.sh) is run
into a clean virtual environment and the entrypoint is started from it, env only, as Cloud Run
starts the container.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import BIN, REPO
from tests.support.cloud_server import running_stack
from tests.support.dockerfile_rules import problems
from tests.support.processes import free_port, start, wait_healthy

DOCKERFILE = REPO / "image" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_broken_copy(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text().replace(
            "FROM python:3.11.14-slim-bookworm AS build", "FROM python:latest AS build"
        )
    )
    result = hadolint(broken)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_follows_our_rules():
    assert problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text()) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("FROM python:3.11.14-slim-bookworm\n", "FROM python:3.11-slim\n", "not pinned"),
        ("USER 10001:10001\n", "USER root\n", "non-root USER"),
        ("RUN ./image/install.sh /opt/venv\n", "RUN pip install .\n", "--no-cache-dir"),
        ("COPY --from=build", "RUN apt-get install -y gcc\nCOPY --from=build", "compilers"),
        (
            'ENTRYPOINT ["mlflow-server-entrypoint"]\n',
            'ENTRYPOINT ["mlflow", "server"]\n',
            "does not start",
        ),
    ],
)
def test_our_rules_catch_broken_copies(old, new, expected):
    text = DOCKERFILE.read_text()
    assert old in text
    found = problems(text.replace(old, new), DOCKERIGNORE.read_text())
    assert any(expected in p for p in found), found


def test_dockerignore_is_required():
    assert any(".dockerignore" in p for p in problems(DOCKERFILE.read_text(), None))


def test_clean_install_starts_the_entrypoint_as_cloud_run_does(tmp_path):
    venv = tmp_path / "image-venv"
    install = subprocess.run(
        [str(REPO / "image" / "install.sh"), str(venv)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr[-3000:]
    compiled = subprocess.run(  # as the Dockerfile's final stage does, for the venv alone here
        [str(venv / "bin" / "python"), str(REPO / "image" / "compile_imported.py"), str(venv)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert not (venv / "bin" / "pip").exists()
    # Only the server package ships: no owner's CLI, no client plugin.
    assert not (venv / "bin" / "deployer").exists()
    site = next((venv / "lib").glob("python3*/site-packages"))
    shipped = sorted(p.name for p in (site / "deployer").iterdir() if p.name != "__pycache__")
    assert shipped == ["__init__.py", "server"]
    # What only MLflow's client flavors and evaluation plots use is not in the image.
    assert not [m for m in CLIENT_ONLY if (site / m).exists()]
    with running_stack(tmp_path) as (cloud, keys):
        port = free_port()
        env = cloud.env(port)
        env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
        # Python may write byte code here, so each module compiled at run time leaves a file.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        before = set(site.rglob("*.pyc"))
        # Run from a folder outside the repo so nothing is imported from the checkout.
        migrate = subprocess.run(
            [str(venv / "bin" / "mlflow-server-entrypoint"), "migrate"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        proc = start(
            [str(venv / "bin" / "mlflow-server-entrypoint")],
            env,
            tmp_path / "serve.log",
            cwd=tmp_path,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            api = f"{url}/api/2.0/mlflow/experiments/search"
            assert requests.get(api, params={"max_results": 1}, timeout=10).status_code == 401
            ok = requests.get(
                api,
                params={"max_results": 1},
                timeout=10,
                headers={"x-goog-iap-jwt-assertion": keys.assertion()},
            )
            assert ok.status_code == 200
            assert route_tour(url, {"x-goog-iap-jwt-assertion": keys.assertion()}) == []
            assert str(venv) in proc.output()  # the server runs from the clean install
        finally:
            proc.stop()
        # No cold start compiles what the server loads: it is byte code in the image already.
        compiled_at_run_time = sorted(
            str(p.relative_to(site)) for p in set(site.rglob("*.pyc")) - before
        )
        assert compiled_at_run_time == []


CLIENT_ONLY = ("pyarrow", "scipy", "sklearn", "matplotlib", "PIL", "skops")


def route_tour(url: str, headers: dict[str, str]) -> list[str]:
    """One call of each kind the server answers (Flask and FastAPI routes, the UI, artifacts,
    the registry, logged models, traces in over OTLP); the calls that did not answer 2xx."""
    s = requests.Session()
    s.headers.update(headers)
    api, failed = f"{url}/api/2.0/mlflow", []

    def call(method: str, path: str, **kw) -> dict:
        r = s.request(method, path if path.startswith("http") else f"{api}/{path}", **kw)
        if not r.ok:
            failed.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
            return {}
        return r.json() if "json" in r.headers.get("content-type", "") else {}

    exp = call("POST", "experiments/create", json={"name": f"tour-{uuid.uuid4().hex}"})
    exp_id = exp.get("experiment_id", "0")
    run_id = call("POST", "runs/create", json={"experiment_id": exp_id}).get("run", {})
    run_id = run_id.get("info", {}).get("run_id", "none")
    metrics = [{"key": "m", "value": i, "timestamp": i, "step": i} for i in range(5)]
    call("POST", "runs/log-batch", json={"run_id": run_id, "metrics": metrics})
    call("GET", f"metrics/get-history-bulk-interval?run_ids={run_id}&metric_key=m")
    call("POST", "runs/search", json={"experiment_ids": [exp_id]})
    call("GET", f"{url}/ajax-api/2.0/mlflow/experiments/search?max_results=5")
    call("POST", "registered-models/create", json={"name": f"tour-{uuid.uuid4().hex}"})
    call("POST", "logged-models", json={"experiment_id": exp_id, "name": "tour"})
    artifact = f"{url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/a.txt"
    call("PUT", artifact, data=b"tour")
    call("GET", artifact)
    trace_hex, now = uuid.uuid4().hex, time.time_ns()
    span = {"traceId": trace_hex, "spanId": trace_hex[:16], "name": "tour"}
    span |= {"startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)}
    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    call("POST", f"{url}/v1/traces", json=otlp, headers={"x-mlflow-experiment-id": exp_id})
    call("GET", f"{url}/api/3.0/mlflow/traces/tr-{trace_hex}")
    call("GET", f"{url}/")
    return failed
