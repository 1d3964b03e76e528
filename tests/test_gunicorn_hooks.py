"""The entrypoint's gunicorn freezes the preloaded app out of its workers' garbage collection
(deployer/server/gunicorn_hooks.py says why), checked on a real gunicorn started with the
entrypoint's own command line."""

from __future__ import annotations

from pathlib import Path

import requests

from deployer.server.entrypoint import gunicorn_argv
from deployer.server.settings import load_settings
from tests.support.gc_probe_app import PRELOADED
from tests.support.processes import base_env, free_port, start, wait_healthy
from tests.test_settings import CLOUD

REPO = Path(__file__).resolve().parent.parent


def test_each_worker_starts_with_the_preloaded_app_frozen(tmp_path):
    port = free_port()
    argv = gunicorn_argv(load_settings(CLOUD | {"PORT": str(port), "SERVER_HOST": "127.0.0.1"}))
    argv[-1] = "tests.support.gc_probe_app:app"
    env = base_env() | {"PYTHONPATH": str(REPO)}
    proc = start(argv, env, tmp_path / "gunicorn.log", cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout=60)
        with requests.Session() as s:  # several calls: both workers are asked
            frozen = {int(s.get(f"{url}/health", timeout=5).text) for _ in range(20)}
        assert min(frozen) >= len(PRELOADED), frozen
    finally:
        proc.stop()
