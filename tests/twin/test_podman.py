"""tests/twin/podman.py: the real image built with podman, migrated and served as Cloud Run runs it.

The first run builds the stand-in base (about 20 s) and image/Dockerfile (about 2 minutes on
two cores); both are cached by content, so later runs (and the twin's e2e) only look them up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from deployer.server.settings import Env
from tests.support.cloud_server import running_stack
from tests.support.processes import free_port
from tests.twin import podman

NAME = f"twin-test-{os.getpid()}"


# --- no podman needed --------------------------------------------------------------------------


def test_the_base_is_read_from_the_dockerfile(tmp_path):
    assert podman.base_image_name() == "python:3.11.14-slim-bookworm"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim-bookworm AS build\nRUN true\nFROM build AS test\n"
        "FROM --platform=linux/amd64 debian:bookworm-slim\n"
    )
    assert podman.from_images(dockerfile) == ["python:3.11-slim-bookworm", "debian:bookworm-slim"]


def test_the_mirror_is_read_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("TWIN_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] https://packages.example/apt cloud-sdk-bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert podman.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("deb http://one-line.example/debian bookworm main\n")
    assert podman.debian_mirror(tmp_path) == "http://one-line.example/debian"


def test_no_mirror_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("TWIN_DEBIAN_MIRROR", raising=False)
    with pytest.raises(podman.PodmanError, match=r"no Debian bookworm mirror .* TWIN_DEBIAN_MIRR"):
        podman.debian_mirror(tmp_path)
    monkeypatch.setenv("TWIN_DEBIAN_MIRROR", "http://override.example/debian")
    assert podman.debian_mirror(tmp_path) == "http://override.example/debian"


def test_missing_tools_name_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(podman.TwinToolsMissing) as err:
        podman.ensure_tools()
    assert "podman, runc, mmdebstrap not installed" in str(err.value)
    assert "make twin-tools" in str(err.value) and "\n" not in str(err.value)


def test_remove_survives_losing_the_race_with_a_container_that_stops(monkeypatch):
    """podman's `rm --force` fails when the container exits on its own while being killed (as
    it did ending a make bench run); remove() tries once more and the container is gone. A
    second failure is not hidden."""
    calls: list[tuple[str, ...]] = []
    failures = ["container state improper: stopped"]

    def fake(*args: str, **_: object) -> None:
        calls.append(args)
        if failures:
            raise podman.PodmanError(f"podman rm failed (exit 2):\n{failures.pop()}")

    monkeypatch.setattr(podman, "podman", fake)
    podman.Container("raced", "", None).remove()
    assert calls == [("rm", "--force", "--ignore", "raced")] * 2
    failures[:] = ["one", "two"]
    with pytest.raises(podman.PodmanError, match="one"):
        podman.Container("raced", "", None).remove()


def test_the_build_key_follows_the_inputs(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM python:3.11.14-slim-bookworm\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "__pycache__").mkdir()
    first = podman.inputs_hash_of(tmp_path, tmp_path / "Dockerfile")
    (tmp_path / "__pycache__" / "app.pyc").write_bytes(b"\0")
    assert podman.inputs_hash_of(tmp_path, tmp_path / "Dockerfile") == first
    (tmp_path / "app.py").write_text("print(2)\n")
    assert podman.inputs_hash_of(tmp_path, tmp_path / "Dockerfile") != first


def test_the_repository_image_is_keyed_as_the_deployer_tags_it(repo):
    from deployer.image_build import content_tag

    assert podman.inputs_hash_of(repo, repo / "image" / "Dockerfile") == content_tag(repo)


# --- the stand-in base -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> str:
    return podman.ensure_base_image()


@pytest.mark.timeout(600)
def test_the_stand_in_base_has_python_where_the_real_one_has(base):
    script = (
        "import os, sys; print(sys.executable, sys.version_info[:2]); "
        "print(os.environ['PATH']); sys.exit(3)"
    )
    code, out = podman.run_to_completion(base, ["python3", "-c", script])
    assert code == 3
    assert "/usr/local/bin/python3 (3, 11)" in out
    assert out.splitlines()[-1].startswith("/usr/local/bin:")
    assert podman.image_label(base, podman.BASE_LABEL) is not None


def test_a_task_past_its_timeout_fails_even_if_it_exits_cleanly(base):
    script = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
        "print('started', flush=True); time.sleep(60)"
    )
    t0 = time.monotonic()
    code, out = podman.run_to_completion(base, ["python3", "-c", script], timeout=3)
    assert code == 124 and "started" in out and "after the 3 s timeout" in out
    assert time.monotonic() - t0 < 30


SIGTERM_SCRIPT = (
    "import signal, sys, time; "
    "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), sys.exit(0))); "
    "print('started', flush=True); time.sleep(60)"
)


def test_stop_sends_sigterm_first(base):
    with podman.run_container(
        base, name=f"{NAME}-term", env={}, args=["python3", "-c", SIGTERM_SCRIPT]
    ) as task:
        wait_for_line(task, "started")
        assert task.exit_code() is None and not task.exited()
        assert task.stop(grace=10) == 0
        assert task.exited() and "got SIGTERM" in task.logs()


def test_stop_kills_what_ignores_sigterm_after_the_grace(base):
    script = "import time; print('started', flush=True); time.sleep(60)"  # PID 1: no handler
    with podman.run_container(
        base, name=f"{NAME}-kill", env={}, args=["python3", "-c", script]
    ) as task:
        wait_for_line(task, "started")
        t0 = time.monotonic()
        assert task.stop(grace=2) == 137
        assert 2 <= time.monotonic() - t0 < 20


def wait_for_line(container: podman.Container, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in container.logs():
        assert time.monotonic() < deadline, container.logs()
        time.sleep(0.2)


def test_tag_and_remove_image(base):
    alias = f"localhost/twin-test/alias:{os.getpid()}"
    podman.tag(base, alias)
    assert podman.image_exists(alias) and podman.image_id(alias) == podman.image_id(base)
    podman.remove_image(alias)
    assert not podman.image_exists(alias) and podman.image_exists(base)
    podman.remove_image(alias)  # already gone: fine


def test_a_small_build_is_cached_by_its_inputs(base, tmp_path, capsys):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {base}\nCOPY app.txt /app.txt\nUSER 10001\n")
    ref = f"localhost/twin-test/small:{os.getpid()}"
    keys = []
    try:
        for content in (f"one {time.time_ns()}", f"two {time.time_ns()}"):
            (tmp_path / "app.txt").write_text(content)
            keys.append(podman.build_key(tmp_path, dockerfile))
            podman.build_image(tmp_path, dockerfile, ref)
            assert "built " in capsys.readouterr().err
            built = podman.image_id(ref)
            podman.build_image(tmp_path, dockerfile, ref)
            assert "no build" in capsys.readouterr().err and podman.image_id(ref) == built
            assert podman.image_label(ref, podman.INPUTS_LABEL) == keys[-1]
            code, out = podman.run_to_completion(ref, ["sh", "-c", "id -u; cat /app.txt"])
            assert (code, out) == (0, f"10001\n{content}")  # the image, not its build stage
        assert keys[0] != keys[1]
    finally:
        for name in [ref, *map(podman.cache_ref, keys)]:
            podman.remove_image(name)


def test_a_failed_build_shows_its_last_lines(base, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN echo boom-marker && false\n")
    with pytest.raises(podman.PodmanError, match=r"podman build failed(?s:.*)boom-marker"):
        podman.build_image(tmp_path, tmp_path / "Dockerfile", "localhost/twin-test/broken:1")
    assert not podman.image_exists("localhost/twin-test/broken:1")


# --- the real image ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_image() -> str:
    return podman.server_image()


def container_env(env: dict[str, str]) -> dict[str, str]:
    """Only the server's settings, as a Cloud Run template sets them; the socket at /cloudsql."""
    names = {e.value for e in Env} | {"STORAGE_EMULATOR_HOST"}
    names -= {Env.PORT.value, Env.CLOUD_SQL_SOCKET_ROOT.value}
    return {k: v for k, v in env.items() if k in names}


@pytest.mark.timeout(1200)
def test_a_second_build_with_the_same_inputs_is_a_lookup(server_image, capsys):
    before = podman.image_id(server_image)
    t0 = time.monotonic()
    assert podman.server_image() == server_image
    assert time.monotonic() - t0 < 30
    assert podman.image_id(server_image) == before
    assert "no build" in capsys.readouterr().err


@pytest.mark.timeout(1200)
def test_the_image_migrates_then_serves_as_cloud_run_runs_it(server_image, tmp_path):
    with running_stack(tmp_path) as (cloud, keys):
        port = free_port()
        env = container_env(cloud.env(port))
        volumes = {cloud.pg.socket_root: "/cloudsql"}
        code, out = podman.run_to_completion(server_image, ["migrate"], env, volumes, timeout=300)
        assert code == 0, out
        with podman.run_container(
            server_image, name=f"{NAME}-serve", env=env, port=port, volumes=volumes
        ) as server:
            server.wait_healthy(timeout=180)
            api = f"{server.url}/api/2.0/mlflow/experiments/search"
            headers = {"x-goog-iap-jwt-assertion": keys.assertion()}
            ok = requests.get(api, params={"max_results": 1}, headers=headers, timeout=10)
            assert ok.status_code == 200, ok.text
            uid = podman.podman("exec", server.name, "id", "-u").stdout.strip()
            assert uid == "10001"  # the image's own USER, not root
            # 0, not 137: SIGTERM alone ended it (podman did not SIGKILL it). The grace is
            # wider than Cloud Run's 10 s: gunicorn waits up to its --graceful-timeout (8 s) for
            # a kept-alive connection, which with the exits after it can pass 10 s here.
            assert server.stop(grace=20) == 0, server.logs()
            assert "Handling signal: term" in server.logs(), server.logs()


@pytest.mark.timeout(1200)
def test_a_container_that_exits_at_start_is_reported_with_its_last_lines(server_image):
    env = {"BACKEND_STORE_URI": "sqlite:////tmp/mlflow.db", "ARTIFACTS_DESTINATION": "/tmp/a"}
    with (
        podman.run_container(
            server_image, name=f"{NAME}-crash", env=env, port=free_port()
        ) as server,
        pytest.raises(podman.ContainerFailed) as err,
    ):
        server.wait_healthy(timeout=120)
    assert err.value.exit_code not in (None, 0)
    assert "AUTH_MODE is not set" in err.value.log_tail
    assert "exited with code" in str(err.value) and "AUTH_MODE is not set" in str(err.value)


def test_a_missing_volume_source_is_refused_before_podman_runs(tmp_path):
    with pytest.raises(podman.PodmanError, match=r"volume source .* does not exist"):
        podman.run_container(
            "unused", name=f"{NAME}-novol", env={}, volumes={Path(tmp_path, "nope"): "/cloudsql"}
        )


def test_an_image_never_built_is_not_pulled():
    t0 = time.monotonic()
    with pytest.raises(podman.PodmanError, match=r"podman run failed(?s:.*)image not known"):
        podman.run_container(
            "europe-west1-docker.pkg.dev/twin-none/mlflow/never:1", name=f"{NAME}-never", env={}
        )
    assert time.monotonic() - t0 < 20
