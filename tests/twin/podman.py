"""Podman for the twin: a stand-in base image, cached builds, containers run as Cloud Run runs them.

Test infrastructure, not product code. No Docker engine exists on these machines, but Debian's
podman does, with two quirks every call here works around through a containers.conf this module
writes under the twin's cache and points CONTAINERS_CONF at (for its own podman calls only):
`runtime = "runc"` (crun refuses hybrid cgroups v1) and nofile/nproc ulimits of 4096 (the sandbox
lacks CAP_SYS_RESOURCE, so podman's default rlimits fail). Docker Hub is unreachable, so the
Dockerfile's base is built from Debian's packages with mmdebstrap and tagged with the FROM name.

API (the twin and the serving bench use exactly this):

    ensure_tools()                       podman, runc, mmdebstrap here, else TwinToolsMissing
                                         (one line: run `make twin-tools`)
    ensure_base_image(name=None) -> str  the stand-in for image/Dockerfile's FROM (or `name`)
    build_image(context_dir, dockerfile, tag, inputs_hash=None) -> str
                                         podman build, skipped when an image built from the same
                                         inputs and base exists (tagged CACHE_REPO:KEY); returns
                                         tag (also labelled mlflow-twin.inputs=KEY)
    server_image(tag=...) -> str         build_image of this repository's image/Dockerfile
    run_container(image, *, name, env, args=None, port=None, volumes=None, user=None,
                  network="host") -> Container
        .url  .logs(tail=50)  .wait_healthy(path="/health", timeout=120) -> seconds
        .exited()  .exit_code()  .stop(grace=10) -> exit code  .remove()   (a context manager)
    run_to_completion(image, args, env=None, volumes=None, timeout=600, ...) -> (code, log tail)
    image_exists(ref)  tag(src, dest)  remove_image(ref)  image_label(ref, key)  image_id(ref)
    podman(*args) -> CompletedProcess    any other podman call, with the same configuration

Containers run as Cloud Run runs them: only the env given (plus $PORT when `port` is given), the
image's own USER unless `user` is given, `volumes` ({host path: container path[:ro]}) bind-
mounted (the twin mounts its Cloud SQL socket folder as /cloudsql), and by default the host's
network, so 127.0.0.1 services (fake GCS, fake Google endpoints) are reachable as they are from
the test. Env values go to podman through its own environment (`-e NAME`), never its argv.
Nothing is ever pulled (`--pull=never`): an image the twin never built or tagged fails to run.
Failures raise ContainerFailed carrying the exit code and the container's last log lines.

Where things live: images in podman's default storage (/var/lib/containers/storage as root);
the Debian root file system tar and containers.conf under $XDG_CACHE_HOME/mlflow-twin
(~/.cache/mlflow-twin), the tar keyed by the hash of its recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "image" / "Dockerfile"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlflow-twin"
TOOLS = ("podman", "runc", "mmdebstrap")
INPUTS_LABEL = "mlflow-twin.inputs"
BASE_LABEL = "mlflow-twin.base-recipe"
SERVER_TAG = "localhost/mlflow-twin/mlflow-server"
CACHE_REPO = "localhost/mlflow-twin/build-cache"

CONTAINERS_CONF = """\
# Written by tests/twin/podman.py: how podman runs on these machines (see its docstring).
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""

# The stand-in for python:3.11.*-slim-bookworm: Debian bookworm's own python3 (3.11.2).
SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv", "ca-certificates")
# The real python:slim image has python built into /usr/local/bin and sets PATH and LANG in its
# config; an imported root file system has no config at all (an `ENV PATH="/opt/venv/bin:${PATH}"`
# would expand to "/opt/venv/bin:"). Debian's python is /usr/bin/python3, so link it where the
# real image has it and set the same PATH, LANG and CMD.
BASE_LAYER = """\
FROM {rootfs}
RUN ln -s /usr/bin/python3 /usr/local/bin/python3 && ln -s /usr/bin/python3 /usr/local/bin/python
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
"""


class PodmanError(RuntimeError):
    """A podman step failed; the message says which and shows podman's last lines."""


class TwinToolsMissing(PodmanError):
    """podman, runc or mmdebstrap is not installed."""


class ContainerFailed(PodmanError):
    """A container exited or never became healthy; carries its exit code and last log lines."""

    def __init__(self, message: str, exit_code: int | None, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last log lines ---\n{log_tail}")
        self.exit_code = exit_code
        self.log_tail = log_tail


def say(message: str) -> None:
    print(f"twin: {message}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise TwinToolsMissing(
            f"{', '.join(missing)} not installed: the twin runs the image with podman; "
            "run `make twin-tools` (Debian packages; needs root or sudo)"
        )


def podman_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with CONTAINERS_CONF pointing at the twin's containers.conf."""
    conf = CACHE_DIR / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = conf.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(CONTAINERS_CONF)
        tmp.replace(conf)
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    env.update(extra or {})
    return env


def podman(
    *args: str,
    check: bool = True,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    ensure_tools()
    result = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=podman_env(env),
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise PodmanError(f"podman {args[0]} failed (exit {result.returncode}):\n{tail}")
    return result


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def tag(src: str, dest: str) -> None:
    """Give an image another name; the twin's Artifact Registry "push" is this."""
    podman("tag", src, dest)


def remove_image(ref: str) -> None:
    """Remove a name (the image itself goes when no name is left); a missing one is fine."""
    podman("rmi", "--ignore", ref)


def image_label(ref: str, key: str) -> str | None:
    out = podman("image", "inspect", "--format", "{{json .Labels}}", ref).stdout
    return (json.loads(out) or {}).get(key)


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


# --- the stand-in base image -------------------------------------------------------------------


def from_images(dockerfile: Path) -> list[str]:
    """The external images a Dockerfile builds FROM (build stages it names are skipped)."""
    images: list[str] = []
    stages: set[str] = set()
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not m:
            continue
        if m.group(1).lower() not in stages and m.group(1) not in images:
            images.append(m.group(1))
        if m.group(2):
            stages.add(m.group(2).lower())
    return images


def base_image_name(dockerfile: Path = DOCKERFILE) -> str:
    return from_images(dockerfile)[-1]


def _sources(apt_dir: Path) -> Iterable[tuple[list[str], list[str]]]:
    """(URIs, suites) of every `deb` source apt reads, one-line and deb822 formats."""
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield [words[1]], [words[2]]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                yield fields.get("uris", "").split(), fields.get("suites", "").split()


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt uses for `suite` (no host name is committed), or
    $TWIN_DEBIAN_MIRROR on a machine whose apt has none (Ubuntu, say)."""
    if os.environ.get("TWIN_DEBIAN_MIRROR"):
        return os.environ["TWIN_DEBIAN_MIRROR"]
    for uris, suites in _sources(apt_dir):
        if suite in suites and uris:
            return uris[0]
    raise PodmanError(
        f"no Debian {suite} mirror in {apt_dir}/sources.list*: set TWIN_DEBIAN_MIRROR to a "
        "Debian mirror URL (…/debian) so mmdebstrap can build the stand-in base image"
    )


def base_recipe_key(mirror: str) -> str:
    recipe = [SUITE, VARIANT, list(INCLUDE), mirror, BASE_LAYER]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def _rootfs_tar(mirror: str, key: str) -> Path:
    """Debian's root file system as a tar, cached under the recipe's key."""
    tar = CACHE_DIR / f"rootfs-{SUITE}-{key}.tar"
    if tar.exists():
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar.with_suffix(f".{os.getpid()}.partial.tar")
    say(f"mmdebstrap {SUITE} from {mirror} (about a minute, once) ...")
    argv = ["mmdebstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}"]
    result = subprocess.run(
        [*argv, SUITE, str(tmp), mirror], capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join(result.stderr.strip().splitlines()[-20:])
        raise PodmanError(f"mmdebstrap failed (exit {result.returncode}):\n{tail}")
    tmp.replace(tar)
    return tar


def ensure_base_image(name: str | None = None) -> str:
    """The Dockerfile's base, built from Debian's packages unless already here; returns its name.

    An image of that name without our label is taken as the real one and kept.
    """
    name = name or base_image_name()
    ensure_tools()
    mirror = debian_mirror()
    key = base_recipe_key(mirror)
    if image_exists(name) and image_label(name, BASE_LABEL) in (None, key):
        return name
    if not re.match(r"^(?:docker\.io/(?:library/)?)?python:3\.11[.\w-]*bookworm$", name):
        raise PodmanError(
            f"base image {name} is not here and no registry can be reached: the twin only has a "
            "stand-in for python:3.11*-bookworm; build or load it with podman first"
        )
    t0 = time.monotonic()
    tar = _rootfs_tar(mirror, key)
    rootfs = f"localhost/mlflow-twin/rootfs:{key}"
    if not image_exists(rootfs):
        podman("import", str(tar), rootfs, timeout=600)
    with tempfile.TemporaryDirectory(prefix="twin-base") as ctx:
        (Path(ctx) / "Containerfile").write_text(BASE_LAYER.format(rootfs=rootfs))
        podman("build", "--pull=never", "--label", f"{BASE_LABEL}={key}", "-t", name, ctx)
    say(f"base image {name} ready ({time.monotonic() - t0:.0f} s)")
    return name


# --- builds cached by their inputs -------------------------------------------------------------


def tree_hash(context_dir: Path, dockerfile: Path) -> str:
    """Every file of a build context (no .git, caches or venvs) and the Dockerfile."""
    digest = hashlib.sha256(dockerfile.read_bytes())
    skip = {".git", "__pycache__", "node_modules", ".pytest_cache", ".ruff_cache"}
    for path in sorted(context_dir.rglob("*")):
        rel = path.relative_to(context_dir)
        if not path.is_file() or any(p in skip or p.startswith(".venv") for p in rel.parts):
            continue
        digest.update(rel.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def inputs_hash_of(context_dir: Path, dockerfile: Path) -> str:
    """deployer.image_build.content_tag for this repository's image, else the whole context."""
    if dockerfile.resolve() == (context_dir / "image" / "Dockerfile").resolve():
        from deployer.image_build import content_tag

        return content_tag(context_dir)
    return tree_hash(context_dir, dockerfile)


def _stream_build(argv: Sequence[str], timeout: float) -> None:
    """Run podman build, printing its progress; on failure raise with its last lines."""
    t0 = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        ["podman", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=podman_env(),
        stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
            if time.monotonic() - t0 > timeout:
                proc.kill()
                raise PodmanError(f"podman build took over {timeout:.0f} s; stopped")
        code = proc.wait()
    if code != 0:
        tail = "\n".join(lines[-30:])
        raise PodmanError(f"podman build failed (exit {code}):\n{tail}")


def _build_mounts() -> list[str]:
    """What RUN steps need from the host to reach the package index: its CA bundle (pip in the
    build validates against it) and its global pip config when it has one (an index or mirror
    set there), both read-only; nothing of either is committed or baked into the image."""
    mounts = ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]
    if Path("/etc/pip.conf").is_file():
        mounts += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
    return mounts


def build_key(context_dir: Path, dockerfile: Path, inputs_hash: str | None = None) -> str:
    """`inputs_hash` (default: `inputs_hash_of`) and the IDs of the FROM images, hashed."""
    bases = [ensure_base_image(name) for name in from_images(dockerfile)]
    inputs = inputs_hash or inputs_hash_of(context_dir, dockerfile)
    return hashlib.sha256(":".join([inputs, *map(image_id, bases)]).encode()).hexdigest()[:16]


def cache_ref(key: str) -> str:
    return f"{CACHE_REPO}:{key}"


def build_image(
    context_dir: Path | str,
    dockerfile: Path | str,
    tag: str,
    inputs_hash: str | None = None,
    timeout: float = 1200,
) -> str:
    """podman build, unless an image built from the same inputs and bases exists; returns tag.

    Each build is also tagged CACHE_REPO:KEY (see build_key); a hit is only (re)tagged. A tag,
    not a label, marks the cache: podman puts a build's labels on the intermediate images of
    every stage too, so a label lookup can find the build stage instead of the image.
    """
    context_dir, dockerfile = Path(context_dir), Path(dockerfile)
    key = build_key(context_dir, dockerfile, inputs_hash)
    if image_exists(cache_ref(key)):
        tag_to(cache_ref(key), tag)
        say(f"image {tag} is built from these inputs ({key}): no build")
        return tag
    say(f"building {tag} from {dockerfile} (inputs {key}) ...")
    t0 = time.monotonic()
    argv = ["build", "--pull=never", "--network", "host", *_build_mounts()]
    argv += ["--label", f"{INPUTS_LABEL}={key}", "-f", str(dockerfile), "-t", cache_ref(key)]
    _stream_build([*argv, "-t", tag, str(context_dir)], timeout)
    say(f"built {tag} in {time.monotonic() - t0:.0f} s")
    return tag


def tag_to(image: str, dest: str) -> None:
    if not image_exists(dest) or image_id(dest) != image_id(image):
        tag(image, dest)


def server_image(tag: str = SERVER_TAG, root: Path = REPO) -> str:
    """This repository's image/Dockerfile, built (or found) and tagged `tag:CONTENT_TAG`."""
    from deployer.image_build import content_tag

    ref = f"{tag}:{content_tag(root)}"
    return build_image(root, root / "image" / "Dockerfile", ref)


# --- containers --------------------------------------------------------------------------------


@dataclass
class Container:
    """A container started by run_container; `port` is where it serves on 127.0.0.1."""

    name: str
    image: str
    port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _state(self) -> tuple[str, int]:
        fmt = "{{.State.Status}} {{.State.ExitCode}}"
        status, code = podman("container", "inspect", "--format", fmt, self.name).stdout.split()
        return status, int(code)

    def exited(self) -> bool:
        return self._state()[0] in ("exited", "stopped", "dead")

    def exit_code(self) -> int | None:
        status, code = self._state()
        return code if status in ("exited", "stopped", "dead") else None

    def logs(self, tail: int = 50) -> str:
        """The container's last `tail` lines, stdout and stderr together.

        Read whole and cut here: podman 4.3's `logs --tail N` returns nothing for some
        containers that exited (k8s-file log driver) while `logs` shows every line.
        """
        result = subprocess.run(
            ["podman", "logs", self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            env=podman_env(),
        )
        return "\n".join(result.stdout.rstrip().splitlines()[-tail:])

    def failed(self, message: str, tail: int = 30) -> ContainerFailed:
        code = self.exit_code()
        return ContainerFailed(f"{message} (container {self.name})", code, self.logs(tail))

    def wait_healthy(self, path: str = "/health", timeout: float = 120) -> float:
        """Poll 127.0.0.1:port/path until 200; seconds waited. ContainerFailed if it exits."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.exited():
                raise self.failed(f"exited with code {self.exit_code()} before {path} answered")
            try:
                if requests.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise self.failed(f"{path} did not answer 200 within {timeout:.0f} s")

    def stop(self, grace: float = 10) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (137 when killed).

        Cloud Run sends SIGTERM and kills 10 s later:
        https://cloud.google.com/run/docs/container-contract#lifecycle
        """
        podman("stop", "--time", str(int(grace)), self.name, timeout=grace + 60)
        return self._state()[1]

    def remove(self) -> None:
        """Stopped (SIGTERM, SIGKILL 10 s later) and removed, whatever state it is in. podman
        4.3's `rm --force` can lose a race with a container that exits on its own as it is
        killed ("container state improper: stopped", which ended a 36-minute make bench run):
        the container is then stopped but still there, and a second rm removes it."""
        try:
            podman("rm", "--force", "--ignore", self.name)
        except PodmanError:
            podman("rm", "--force", "--ignore", self.name)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _volume_args(volumes: Mapping[str | Path, str] | None) -> list[str]:
    """--mount, not -v: Cloud SQL folders are named PROJECT:REGION:INSTANCE, and -v splits on
    colons. A target ending in ":ro" is mounted read-only."""
    args: list[str] = []
    for host, target in (volumes or {}).items():
        if not Path(host).exists():
            raise PodmanError(f"volume source {host} does not exist")
        readonly = target.endswith(":ro")
        spec = f"type=bind,source={host},target={target.removesuffix(':ro')}"
        args += ["--mount", spec + (",readonly" if readonly else "")]
    return args


def run_container(
    image: str,
    *,
    name: str,
    env: Mapping[str, str],
    args: Sequence[str] | None = None,
    port: int | None = None,
    volumes: Mapping[str | Path, str] | None = None,
    user: str | None = None,
    network: str = "host",
    command: Sequence[str] | None = None,
) -> Container:
    """Start `image` detached as Cloud Run would (see the module docstring); a container of the
    same name is replaced. `command` replaces the image's ENTRYPOINT (Cloud Run's `command`)."""
    env = dict(env)
    if port is not None:
        env["PORT"] = str(port)
    # Never pull: a name the twin never built or "pushed" must fail, not reach a registry.
    # --http-proxy=false: podman passes the caller's proxy variables into containers by default;
    # Cloud Run instances have none.
    argv = ["run", "--pull=never", "--http-proxy=false", "--detach", "--replace"]
    argv += ["--name", name, "--network", network]
    if port is not None and network != "host":
        argv += ["--publish", f"127.0.0.1:{port}:{port}"]
    for key in env:
        argv += ["--env", key]  # the value comes from podman's own environment
    argv += _volume_args(volumes)
    if user is not None:
        argv += ["--user", user]
    if command:
        argv += ["--entrypoint", json.dumps(list(command))]
    podman(*argv, image, *(args or ()), env=env, timeout=180)
    return Container(name=name, image=image, port=port)


def run_to_completion(
    image: str,
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str | Path, str] | None = None,
    timeout: float = 600,
    *,
    name: str | None = None,
    user: str | None = None,
    network: str = "host",
    tail: int = 50,
    command: Sequence[str] | None = None,
) -> tuple[int, str]:
    """Run a task to its end as a Cloud Run job's task: (exit code, last log lines).

    Past `timeout` the task is stopped (SIGTERM, then SIGKILL) and the tail says so.
    """
    name = name or f"twin-task-{os.getpid()}-{time.monotonic_ns()}"
    container = run_container(
        image,
        name=name,
        env=env or {},
        args=args,
        volumes=volumes,
        user=user,
        network=network,
        command=command,
    )
    with container:
        note = ""
        try:
            podman("wait", name, timeout=timeout)
        except subprocess.TimeoutExpired:
            container.stop()
            note = f"\ntwin: task stopped: still running after the {timeout:.0f} s timeout"
        code = container.exit_code()
        if note or code is None:
            code = code or 124  # a task past its timeout fails even if it exits 0 on SIGTERM
        return code, container.logs(tail) + note
