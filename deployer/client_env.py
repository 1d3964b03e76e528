"""The environment an MLflow client needs, for the cloud stack or for `deployer local`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from deployer import local as local_server
from deployer import user_login
from deployer.errors import DeployerError
from deployer.mlflow_auth import (
    AUTH_NAME,
    ENV_AUDIENCE,
    ENV_SERVICE_ACCOUNT,
    MULTIPART_THRESHOLD_BYTES,
    minter_for,
)
from deployer.tokens import MintedToken, audience_for

_SERVICE_ACCOUNT = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$"
)


class ClientEnvError(DeployerError, ValueError):
    pass


def cloud_exports(
    url: str | None, service_account: str | None, oauth_client_id: str | None = None
) -> list[str]:
    """The exports for a deployed server; with the OAuth client IAP allowlists for programmatic
    access, also its ID, so a `deployer login` for that client is used (and one for another
    deployment's client is not)."""
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
        *([f"export {user_login.ENV_CLIENT_ID}={oauth_client_id}"] if oauth_client_id else []),
    ]


LOGIN_HINT = (
    "then `deployer login` once (with MLFLOW_IAP_OAUTH_CLIENT_SECRET from the project owner), "
    "so runs from code carry your own email"
)


def login_offered(lines: list[str]) -> bool:
    """Whether the exports name an allowlisted OAuth client, so `deployer login` applies."""
    return any(f"export {user_login.ENV_CLIENT_ID}=" in line for line in lines)


def oauth_client_of(outputs: Mapping[str, object]) -> str | None:
    """The first allowlisted desktop OAuth client of a deployment's outputs, if any."""
    clients = outputs.get("iap_programmatic_clients") or []
    return str(clients[0]) if isinstance(clients, list) and clients else None


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


def token_environment(
    environ: Mapping[str, str],
    audience: str | None = None,
    impersonate: str | None = None,
    environment: str | None = None,
    root: Path | None = None,
) -> dict[str, str]:
    """The plugin's environment for `deployer token`: flags first, then a named environment's
    outputs, then the process environment, then the outputs `deployer deploy` cached (when
    nothing else names a server). `--env B` in a shell set up for A mints for B, as A's account
    is no member of B."""
    env = dict(environ)
    if environment and not audience:
        outputs = deployed_outputs(environment, root)
        env[ENV_AUDIENCE] = outputs["client_audience"]
        env[ENV_SERVICE_ACCOUNT] = outputs["client_service_account"]
    elif not audience and not env.get(ENV_AUDIENCE) and not env.get("MLFLOW_TRACKING_URI"):
        try:
            outputs = deployed_outputs(None, root)
        except ClientEnvError:
            outputs = {}
        if outputs:
            env[ENV_AUDIENCE] = outputs["client_audience"]
            env.setdefault(ENV_SERVICE_ACCOUNT, outputs["client_service_account"])
    if audience:
        env[ENV_AUDIENCE] = audience_for(audience)
    if impersonate:
        env[ENV_SERVICE_ACCOUNT] = impersonate
    if not env.get(ENV_AUDIENCE) and not env.get("MLFLOW_TRACKING_URI"):
        raise ClientEnvError(
            "no server to mint a token for: pass --audience https://…run.app or set "
            "MLFLOW_TRACKING_URI (`deployer env` prints it)"
        )
    return env


def mint_token(env: Mapping[str, str], lifetime: int) -> tuple[MintedToken, str]:
    """A token for the server `env` names, and the audience it was minted for.

    The same identity rule as the plugin (`mlflow_auth.minter_for`): the person's own ID token
    when they signed in with `deployer login` (audience = the allowlisted OAuth client; Google's
    ID tokens live an hour whatever `lifetime` says), else the shared client account."""
    _, minter = minter_for(env, lifetime)
    return minter.mint(), minter.audience


def env_lines(
    url: str | None, service_account: str | None, environment: str | None = None
) -> list[str]:
    """`deployer env`'s lines: from the flags, or from a deployed environment's outputs."""
    if url is None and service_account is None:
        outputs = deployed_outputs(environment)
        url, service_account = outputs["service_url"], outputs["client_service_account"]
        return cloud_exports(url, service_account, oauth_client_of(outputs))
    return cloud_exports(url, service_account)
