"""The server image: tagged by the content it is built from, built by Cloud Build (or Docker).

An unchanged tree gives the same tag, so an image that already exists in Artifact Registry is
not built again; a changed file gives a new tag, so Cloud Run always rolls out a new revision.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from deployer.runner import Runner
from deployer.stack import REPO_ROOT, deployment_name
from deployer.vars import Settings

IMAGE_NAME = "mlflow-server"
# Everything image/Dockerfile copies in (see .dockerignore), and the Dockerfile itself: the
# server package and nothing else of the deployer, so a change to the CLI builds no new image.
INPUTS = (
    "image/Dockerfile",
    "image/install.sh",
    "image/compile_imported.py",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "constraints.txt",
    "deployer/__init__.py",
)
PACKAGE_INPUTS = "deployer/server"


def input_files(root: Path = REPO_ROOT) -> list[Path]:
    files = [root / p for p in INPUTS]
    files += sorted(
        p
        for p in (root / PACKAGE_INPUTS).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    return files


def content_tag(root: Path = REPO_ROOT) -> str:
    digest = hashlib.sha256()
    for path in input_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def repository_id(service_name: str, environment: str) -> str:
    """The Artifact Registry repository Terraform creates for this environment: terraform/main.tf's
    `local.name` (tests/test_terraform.py runs both rules on the same inputs)."""
    return deployment_name(service_name, environment)


def image_reference(project: str, region: str, repository: str, root: Path = REPO_ROOT) -> str:
    return f"{region}-docker.pkg.dev/{project}/{repository}/{IMAGE_NAME}:{content_tag(root)}"


def image_for(settings: Settings, root: Path = REPO_ROOT) -> str:
    """The image reference of this tree for one environment's registry."""
    repository = repository_id(settings["service_name"], settings.environment)
    return image_reference(settings["project_id"], settings["region"], repository, root)


def image_exists(runner: Runner, image: str, project: str) -> bool:
    r = runner.run(
        [
            "gcloud",
            "artifacts",
            "docker",
            "images",
            "describe",
            image,
            "--project",
            project,
            "--format=json",
        ],
        step="looking for the image",
        ok_codes=(0, 1),
    )
    return r.returncode == 0


def build(
    runner: Runner,
    image: str,
    project: str,
    region: str,
    local_docker: bool = False,
    root: Path = REPO_ROOT,
) -> bool:
    """Build and push unless the image exists; True when a build ran (or would, dry-run)."""
    if image_exists(runner, image, project):
        runner.echo(f"Image {image} already exists: nothing to build.")
        return False
    fix = "The build log above says what failed; fix it and run the same command again."
    if local_docker:
        runner.run(
            ["gcloud", "auth", "configure-docker", f"{region}-docker.pkg.dev", "--quiet"],
            step="letting Docker push to Artifact Registry",
            mutating=True,
        )
        runner.run(
            ["docker", "build", "-f", "image/Dockerfile", "-t", image, "."],
            cwd=root,
            step="docker build",
            mutating=True,
            stream=True,
            fix=fix,
        )
        runner.run(["docker", "push", image], step="docker push", mutating=True, stream=True)
    else:
        runner.echo("Building the server image with Cloud Build (a few minutes) ...")
        runner.run(
            [
                "gcloud",
                "builds",
                "submit",
                str(root),
                "--project",
                project,
                "--region",
                region,
                "--config",
                str(root / "image" / "cloudbuild.yaml"),
                f"--substitutions=_IMAGE={image}",
            ],
            step="Cloud Build",
            mutating=True,
            stream=True,
            fix=fix,
        )
    return True
