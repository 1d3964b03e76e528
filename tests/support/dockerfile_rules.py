"""Our own rules for image/Dockerfile, beyond hadolint's: what the image must be to ship."""

from __future__ import annotations

import re


def stages(text: str) -> list[list[str]]:
    """Instructions (continuations joined, comments dropped), grouped by FROM."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    out: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def problems(dockerfile: str, dockerignore: str | None) -> list[str]:
    found: list[str] = []
    groups = stages(dockerfile)
    if not groups:
        return ["no FROM instruction"]
    for group in groups:
        image = group[0].split()[1]
        if not re.match(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$", image):
            found.append(f"base image {image} is not pinned to a full version")
        if "slim" not in image and "distroless" not in image:
            found.append(f"base image {image} is not a slim image")
    final = groups[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        found.append("the final stage does not switch to a non-root USER")
    text = "\n".join(final)
    if re.search(r"\b(gcc|g\+\+|build-essential|make|clang)\b", text):
        found.append("the final stage installs compilers")
    if re.search(r"pip install(?!.*--no-cache-dir)", dockerfile):
        found.append("pip install without --no-cache-dir leaves a cache in a layer")
    if "image/install.sh" not in dockerfile:
        found.append("the project is not installed through image/install.sh (the tested path)")
    if not re.search(r"(^|\n)ENV .*PORT=8080", text) and "PORT" not in text:
        found.append("the final stage does not set PORT")
    if not any(
        line.upper().startswith(("ENTRYPOINT", "CMD")) and "mlflow-server-entrypoint" in line
        for line in final
    ):
        found.append("the image does not start mlflow-server-entrypoint")
    if dockerignore is None:
        found.append(".dockerignore is missing")
    elif "*" not in _patterns(dockerignore) and ".venv" not in _patterns(dockerignore):
        found.append(".dockerignore does not exclude local virtual environments")
    return found


def _patterns(dockerignore: str) -> list[str]:
    return [ln.strip() for ln in dockerignore.splitlines() if ln.strip() and not ln.startswith("#")]
