"""The images Cloud Run would start, ours and stock, measured side by side with podman.

Ours is image/Dockerfile; stock is the same base with `pip install mlflow==` our pin, started
as MLflow's documentation starts it (`mlflow server --host 0.0.0.0 --port $PORT`). Both are
built through the twin's podman layer (tests/twin/podman.py: stand-in base image, builds cached
by their inputs) and run as Cloud Run runs them, each on its own migrated SQLite file in a
mounted folder. Measured: start to the first /health 200, image size, and the container's
memory (PSS of its process tree) idle, once its own start-up work is done, and under 8 clients
searching the dataset bench.workload seeds. The two images start in turns, one container at a time.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.progress import step
from bench.run import REPO, Plan, Samples, ratio_row, settle, tree_pss_mib
from bench.workload import concurrent_search, seed
from tests.twin import podman

# (image, run environment, request headers, the data folder mounted at /data)
ImageSpec = tuple[str, dict[str, str], dict[str, str], Path]

STOCK_DOCKERFILE = """\
FROM {base}
RUN python3 -m venv /opt/venv \\
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --quiet \\
        "mlflow=={version}"
ENV PATH="/opt/venv/bin:${{PATH}}" PORT=8080
WORKDIR /tmp
CMD ["sh", "-c", "exec mlflow server --host 0.0.0.0 --port \\"$PORT\\""]
"""


def mlflow_pin() -> str:
    match = re.search(r"^mlflow==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    if match is None:
        raise RuntimeError("constraints.txt pins no mlflow version")
    return match.group(1)


def stock_image() -> str:
    base = podman.base_image_name()
    context = Path(tempfile.mkdtemp(prefix="bench-stock-image-"))
    (context / "Dockerfile").write_text(STOCK_DOCKERFILE.format(base=base, version=mlflow_pin()))
    return podman.build_image(context, context / "Dockerfile", "localhost/bench/mlflow-stock:pin")


def image_mib(ref: str) -> float:
    return int(podman.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout) / 2**20


def container_pss_mib(name: str) -> float:
    return tree_pss_mib(container_pid(name))


def _migrated_sqlite(folder: Path, name: str) -> str:
    """A migrated SQLite file in `folder` (mounted at /data); its URI inside the container."""
    folder.chmod(0o777)  # the image's user (uid 10001) writes there too
    subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", f"sqlite:///{folder / name}"],
        check=True,
        capture_output=True,
    )
    (folder / name).chmod(0o666)
    return f"sqlite:////data/{name}"


def run_env(kind: str, data: Path, jwks_url: str, audience: str) -> dict[str, str]:
    uri = _migrated_sqlite(data, f"{kind}.db")
    if kind == "stock":
        return {
            "MLFLOW_BACKEND_STORE_URI": uri,
            "MLFLOW_ARTIFACTS_DESTINATION": "/data/artifacts",
        }
    return {
        "BACKEND_STORE_URI": uri,
        "ARTIFACTS_DESTINATION": "/data/artifacts",
        "AUTH_MODE": "iap",
        "IAP_AUDIENCE": audience,
        "IAP_JWKS_URL": jwks_url,
    }


def container_pid(name: str) -> int:
    return int(podman.podman("container", "inspect", "--format", "{{.State.Pid}}", name).stdout)


def start_once(kind: str, spec: ImageSpec, i: int, plan: Plan, out: Samples) -> None:
    """One cold start of one image; the first also reads its memory, idle and (the dataset
    seeded) under load."""
    image, env, headers, folder = spec
    name = f"bench-{kind}-{i}"
    container = podman.run_container(
        image, name=name, env=env, port=podman_free_port(), volumes={folder: "/data"}
    )
    with container:
        out.add("start", container.wait_healthy(timeout=180))
        if i == 0:
            settle(container_pid(name))
            out.add("idle", container_pss_mib(name))
            seeded = seed(container.url, headers)
            concurrent_search(container.url, headers, "experiments", seeded, plan.warmup)
            out.add("load", container_pss_mib(name))


def measure_images(specs: dict[str, ImageSpec], plan: Plan) -> dict[str, Samples]:
    """Cold starts of both images in turns (alternating order), one container at a time."""
    out = {kind: Samples() for kind in specs}
    for kind, spec in specs.items():
        out[kind].add("image", image_mib(spec[0]))
    for i in range(plan.starts):
        step(f"container cold starts: {i + 1} of {plan.starts} of each image")
        order = list(specs) if i % 2 == 0 else list(reversed(specs))
        for kind in order:
            start_once(kind, specs[kind], i, plan, out[kind])
    return out


def podman_free_port() -> int:
    from tests.support.processes import free_port

    return free_port()


CONTAINER_MEASURES = (
    ("container cold start to first /health 200", "start", "s", "<= 0.5x", False, 0.5),
    ("image size", "image", "MiB", "<= 0.7x", False, 0.7),
    ("container memory, idle", "idle", "MiB", "", False, None),
    ("container memory, 8 clients searching", "load", "MiB", "", False, None),
)


def container_rows(plan: Plan, assertion: Callable[[], str], jwks_url: str, audience: str):
    """The container rows, or ([], [why not]) where podman or its tools are missing here."""
    try:
        podman.ensure_tools()
        step("building both images with podman (the first build here takes a few minutes)")
        images = {"ours": podman.server_image(), "stock": stock_image()}
    except podman.PodmanError as e:
        return [], [f"Container rows not measured: {e}"]
    specs: dict[str, ImageSpec] = {}
    for kind, image in images.items():
        data = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-data-"))
        env = run_env(kind, data, jwks_url, audience)
        headers = {"x-goog-iap-jwt-assertion": assertion()} if kind == "ours" else {}
        specs[kind] = (image, env, headers, data)
    results = measure_images(specs, plan)
    rows = [ratio_row(m, results["ours"], results["stock"]) for m in CONTAINER_MEASURES]
    notes = [
        "Containers: image/Dockerfile vs the same base with `pip install mlflow=="
        + mlflow_pin()
        + "` (`mlflow server --host 0.0.0.0 --port $PORT`), run with podman as Cloud Run runs "
        "them, each on a migrated SQLite file; memory is the PSS of the container's processes "
        "(under load: 8 clients searching the seeded dataset)."
    ]
    return rows, notes
