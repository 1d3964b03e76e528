"""The environment an MLflow client needs, for the cloud stack or for `deployer local`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from deployer import local as local_server
from deployer.mlflow_auth import (
    AUTH_NAME,
    ENV_SERVICE_ACCOUNT,
    MULTIPART_THRESHOLD_BYTES,
)

_SERVICE_ACCOUNT = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$"
)


class ClientEnvError(ValueError):
    pass


def cloud_exports(url: str | None, service_account: str | None) -> list[str]:
    loopback = url is not None and url.startswith(("http://127.0.0.1", "http://localhost"))
    if not url or not (url.startswith("https://") or loopback):
        raise ClientEnvError(
            "pass --url with the deployed service's https:// URL (`deployer status` shows it)"
        )
    if not service_account or not _SERVICE_ACCOUNT.match(service_account):
        raise ClientEnvError(
            "pass --service-account with the client service account "
            "(mlflow-log-pusher@PROJECT.iam.gserviceaccount.com)"
        )
    return [
        f"export MLFLOW_TRACKING_URI={url.rstrip('/')}",
        f"export MLFLOW_TRACKING_AUTH={AUTH_NAME}",
        f"export {ENV_SERVICE_ACCOUNT}={service_account}",
        f"export MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE={MULTIPART_THRESHOLD_BYTES}",
    ]


def local_exports(data_dir: Path, port: int) -> list[str]:
    paths = local_server.LocalPaths(data_dir.resolve())
    if not paths.admin_password.exists():
        raise ClientEnvError(
            f"no local server data in {paths.root}: run `deployer local` first "
            "(or pass its --data-dir)"
        )
    return local_server.client_exports(paths, local_server.tracking_url("127.0.0.1", port))


def deployed_outputs(environment: str | None = None, root: Path | None = None) -> dict:
    """The outputs `deployer deploy` cached for an environment (the only one, if not named)."""
    root = root or Path.cwd() / ".deployer"
    found = sorted(root.glob("*/outputs.json"))
    if environment:
        found = [p for p in found if p.parent.name == environment]
    if len(found) != 1:
        names = ", ".join(p.parent.name for p in found) or "none"
        raise ClientEnvError(
            f"no single deployed environment to read (found: {names}): pass --env NAME, or "
            "--url and --service-account"
        )
    return json.loads(found[0].read_text())
