"""Real processes for tests: free ports, start with a log file, wait for health, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_text(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None and text not in self.output():
                raise AssertionError(
                    f"process exited ({self.popen.returncode}) before printing {text!r}:\n"
                    + self.output()[-4000:]
                )
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not printed within {timeout}s:\n{self.output()[-4000:]}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


def start(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> Proc:
    fh = open(log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    popen = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdout=fh,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    fh.close()
    return Proc(popen, log)


def wait_healthy(
    url: str, proc: Proc | None = None, timeout: float = 90, interval: float = 0.1
) -> float:
    """Poll url/health every `interval` seconds until 200; return seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(
                f"server exited ({proc.popen.returncode}):\n" + proc.output()[-4000:]
            )
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise AssertionError(
        f"{url}/health not healthy after {timeout}s"
        + ("" if proc is None else ":\n" + proc.output()[-4000:])
    )


def base_env() -> dict[str, str]:
    """The test process's environment minus anything that would leak into a child server."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GOOGLE_", "CLOUDSDK_"))
    }
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "2"
    env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    return env
