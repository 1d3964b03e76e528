"""Each person's own identity from code: `deployer login`, and ID tokens minted from it.

What Google allows (https://cloud.google.com/iap/docs/authentication-howto, "Authenticating
from a desktop app", and IAP's `IapSettings.accessSettings.oauthSettings.programmaticClients`):
IAP with its Google-managed OAuth client refuses a person's plain gcloud ID token, but accepts a
Google-issued ID token whose audience is an OAuth client ID the resource allowlists for
programmatic access. So the project owner creates one *Desktop app* OAuth client once in the
console, allowlists its ID (Terraform's `google_iap_settings` ->
`access_settings.oauth_settings.programmatic_clients`) and shares its ID and secret with the
team (Google treats a desktop client's secret as not confidential). Each person then runs
`deployer login` once: the installed-app flow (google-auth-oauthlib) asks Google for the
`openid email` scopes in the browser and gives back a refresh token, which is kept in the user's
config folder with mode 0600. From it, the MLflow plugin asks Google's token endpoint for a fresh
ID token (audience = that client ID) whenever the last one is about to expire, so runs carry the
person's own email. No key file is involved, and nothing here can mint for anyone else.

People who have not logged in, CI and groups keep the shared client service account.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import google.auth.exceptions
import jwt
import requests
from google.auth.transport.requests import Request
from google.oauth2 import credentials as user_credentials

from deployer.tokens import MAX_LIFETIME_SECONDS, MintedToken, TokenError

SCOPES = ("openid", "https://www.googleapis.com/auth/userinfo.email")
AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
TOKEN_URI = "https://oauth2.googleapis.com/token"
ENV_CLIENT_ID = "MLFLOW_IAP_OAUTH_CLIENT_ID"
ENV_CLIENT_SECRET = "MLFLOW_IAP_OAUTH_CLIENT_SECRET"
ENV_CONFIG_DIR = "MLFLOW_DEPLOYER_CONFIG_DIR"
LOGIN_FILE = "login.json"
SOURCE = "your own Google sign-in (deployer login)"


@dataclass(frozen=True)
class StoredLogin:
    client_id: str
    client_secret: str
    refresh_token: str
    email: str
    token_uri: str = TOKEN_URI


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$MLFLOW_DEPLOYER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/mlflow-deployer` (~/.config)."""
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG_DIR):
        return Path(env[ENV_CONFIG_DIR])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlflow-deployer"


def login_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / LOGIN_FILE


def save(login: StoredLogin, path: Path) -> None:
    """Write atomically, readable by the user only (the folder 0700, the file 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".login-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(login), f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> StoredLogin | None:
    """The stored login, or None when there is none; a damaged file is one clear error."""
    if not path.exists():
        return None
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"{path} is readable by others: run `chmod 600 {path}`")
    try:
        doc = json.loads(path.read_text())
        return StoredLogin(**{k: str(doc[k]) for k in StoredLogin.__dataclass_fields__})
    except (ValueError, KeyError, TypeError):
        raise TokenError(f"{path} is damaged: run `deployer login` again") from None


def _client_config(client_id: str, client_secret: str, auth_uri: str, token_uri: str) -> dict:
    return {
        "installed": {
            "client_id": client_id,
            "client_secret": client_secret,
            "auth_uri": auth_uri,
            "token_uri": token_uri,
            "redirect_uris": ["http://localhost"],
        }
    }


def login(
    client_id: str,
    client_secret: str,
    *,
    open_browser: bool = True,
    browser: str | None = None,
    timeout_seconds: int = 300,
) -> StoredLogin:
    """Run the installed-app flow in the browser; return what `save` keeps."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    auth_uri, token_uri = AUTH_URI, TOKEN_URI  # read at call time: tests point them at fakes

    flow = InstalledAppFlow.from_client_config(
        _client_config(client_id, client_secret, auth_uri, token_uri), scopes=list(SCOPES)
    )
    try:
        creds = flow.run_local_server(
            port=0,
            open_browser=open_browser,
            browser=browser,
            timeout_seconds=timeout_seconds,
            access_type="offline",
            prompt="consent",  # Google returns a refresh token only on consent
        )
    except Exception as e:  # oauthlib, the local server's timeout, the token endpoint
        raise TokenError(f"sign-in did not complete: {_first_line(e)}") from None
    if not creds.refresh_token or not getattr(creds, "id_token", None):
        raise TokenError(
            "Google returned no refresh token or ID token: revoke the app's access at "
            "https://myaccount.google.com/permissions and run `deployer login` again"
        )
    email = _unverified_claims(creds.id_token).get("email")
    if not isinstance(email, str):
        raise TokenError("the ID token carries no email: the `email` scope was not granted")
    return StoredLogin(client_id, client_secret, creds.refresh_token, email, token_uri)


def _unverified_claims(token: str) -> dict[str, Any]:
    """Claims of a token we just received from Google over TLS, read for its `exp`/`email`."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise TokenError(f"Google returned a malformed ID token: {e}") from None


class PersonalTokenMinter:
    """Mints the person's own ID token (audience = the allowlisted client) from the login."""

    lifetime = MAX_LIFETIME_SECONDS  # Google's ID tokens live an hour

    def __init__(self, stored: StoredLogin) -> None:
        self.stored = stored
        self.audience = stored.client_id

    def mint(self) -> MintedToken:
        s = self.stored
        creds = user_credentials.Credentials(
            token=None,
            refresh_token=s.refresh_token,
            token_uri=s.token_uri,
            client_id=s.client_id,
            client_secret=s.client_secret,
        )
        try:
            creds.refresh(Request())
        except google.auth.exceptions.RefreshError as e:
            raise TokenError(
                f"your sign-in as {s.email} was refused ({_first_line(e)}): run `deployer login` "
                "again"
            ) from None
        except (google.auth.exceptions.TransportError, requests.RequestException) as e:
            raise TokenError(f"cannot reach Google's token endpoint: {_first_line(e)}") from None
        token = getattr(creds, "id_token", None)
        if not token:
            raise TokenError("Google returned no ID token: run `deployer login` again")
        claims = _unverified_claims(token)
        return MintedToken(token, float(claims.get("exp", 0)), str(claims.get("email")), SOURCE)


def _first_line(e: BaseException) -> str:
    return (str(e).strip() or repr(e)).splitlines()[0][:300]
