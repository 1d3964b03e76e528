"""Local stand-ins for Google's own endpoints, speaking their real wire formats.

One loopback HTTP server plays:
- the metadata server (`GCE_METADATA_HOST`/`GCE_METADATA_IP`): ping, service-account info,
  access tokens, identity (ID) tokens, project id;
- the OAuth 2.0 token endpoint (a key file's or ADC file's `token_uri`): JWT-bearer grants for
  service-account keys (access tokens, or ID tokens with `target_audience`), refresh-token grants
  for user ADC, and for installed-app (desktop) clients the authorization endpoint, the
  authorization-code grant (with PKCE) and refresh grants that return an `id_token` whose `aud`
  is the client ID, as Google does for the `openid email` scopes;
- IAM Credentials (`signBlob`, `signJwt`, `generateIdToken`), with the token-creator permission
  checked per caller and target;
- the public key sets: Google's ID-token certs and each service account's JWK set.

Every token is a real RS256 JWT signed with a real RSA key; tests verify them the way IAP does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deployer.server import jose
from tests.support import jws
from tests.support.http import LocalHttpServer, Request, Response
from tests.support.processes import base_env

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOGLE_ISSUER = "https://accounts.google.com"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
PROJECT_NUMBER = "123456789012"
WIF_AUDIENCE = (
    f"//iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/"
    "workloadIdentityPools/github/providers/github"
)
METADATA_FLAVOR = {"Metadata-Flavor": "Google"}


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _error(status: int, message: str, reason: str) -> Response:
    return Response(status, {"error": {"code": status, "message": message, "status": reason}})


@dataclass
class ServiceAccount:
    email: str
    key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    key_id: str = field(default_factory=lambda: secrets.token_hex(20))
    unique_id: str = field(default_factory=lambda: str(10**20 + secrets.randbelow(10**20)))


@dataclass
class Counters:
    id_tokens: int = 0
    access_tokens: int = 0
    sign_jwt: int = 0
    sign_blob: int = 0


class GoogleFakes:
    def __init__(self, project_id: str = "test-project", id_token_lifetime: int = 3600) -> None:
        self.project_id = project_id
        self.id_token_lifetime = id_token_lifetime
        self.google_key = _rsa()
        self.google_kid = secrets.token_hex(20)
        self.github_key = _rsa()
        self.accounts: dict[str, ServiceAccount] = {}
        # access token -> (principal, expiry)
        self.access_tokens: dict[str, tuple[str, float]] = {}
        # target service account -> principals allowed to mint/sign as it
        self.token_creators: dict[str, set[str]] = {}
        # refresh token -> user email (user ADC)
        self.refresh_tokens: dict[str, str] = {}
        self.metadata_account: str | None = None
        # desktop OAuth clients: client id -> secret; who is signed in to the browser
        self.oauth_clients: dict[str, str] = {}
        self.browser_user: str | None = None
        # authorization code -> (email, client id, PKCE challenge, redirect uri)
        self.auth_codes: dict[str, tuple[str, str, str, str]] = {}
        # refresh token -> (email, client id) for openid sign-ins
        self.openid_refresh_tokens: dict[str, tuple[str, str]] = {}
        self.counters = Counters()
        self.fail_next: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = LocalHttpServer(self._route)
        self.url = self.server.url
        self.host = f"127.0.0.1:{self.server.port}"

    # ----- set-up helpers -------------------------------------------------------------------
    def service_account(self, email: str) -> ServiceAccount:
        if email not in self.accounts:
            self.accounts[email] = ServiceAccount(email)
        return self.accounts[email]

    def allow_token_creator(self, principal: str, target: str) -> None:
        self.token_creators.setdefault(target, set()).add(principal)

    def key_file(self, email: str, path: Path) -> Path:
        sa = self.service_account(email)
        pem = sa.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.project_id,
                    "private_key_id": sa.key_id,
                    "private_key": pem,
                    "client_email": email,
                    "client_id": sa.unique_id,
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        return path

    def user_adc_file(self, email: str, path: Path) -> Path:
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = email
        path.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": "fake-client.apps.googleusercontent.com",
                    "client_secret": "fake-secret",
                    "refresh_token": refresh,
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        return path

    def impersonated_adc_file(self, user: str, target: str, path: Path) -> Path:
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = user
        impersonation_url = f"{self.url}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
        path.write_text(
            json.dumps(
                {
                    "type": "impersonated_service_account",
                    "service_account_impersonation_url": impersonation_url,
                    "source_credentials": {
                        "type": "authorized_user",
                        "client_id": "fake-client.apps.googleusercontent.com",
                        "client_secret": "fake-secret",
                        "refresh_token": refresh,
                        "token_uri": f"{self.url}/token",
                    },
                    "delegates": [],
                }
            )
        )
        return path

    def metadata_env(self) -> dict[str, str]:
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    def client_env(self, root: Path, **extra: str) -> dict[str, str]:
        """A client's environment with no Google credentials but those in `extra`: no gcloud
        config, a metadata server address that refuses at once, and google-auth's fixed
        endpoints pointed at these fakes (see google_endpoints/sitecustomize.py)."""
        gcloud = root / "gcloud-empty"
        gcloud.mkdir(exist_ok=True)
        env = base_env()
        env.update(
            {
                "CLOUDSDK_CONFIG": str(gcloud),
                "GCE_METADATA_HOST": "127.0.0.1:9",
                "GCE_METADATA_IP": "127.0.0.1:9",
                "IAM_CREDENTIALS_ENDPOINT": self.url,
                # no `deployer login` of the person running the tests leaks in
                "MLFLOW_DEPLOYER_CONFIG_DIR": str(root / "deployer-config-empty"),
                "DEPLOYER_TEST_GOOGLE_FAKES": self.url,
                # the fixed endpoints' shim, then the tree under test (not an installed copy)
                "PYTHONPATH": os.pathsep.join(
                    [str(Path(__file__).with_name("google_endpoints")), str(REPO_ROOT)]
                ),
            }
        )
        env.update(extra)
        return env

    # ----- verification (what IAP / the stand-in does) -----------------------------------
    def google_public_key(self, kid: str):
        return self.google_key.public_key() if kid == self.google_kid else None

    def service_account_public_key(self, kid: str):
        for sa in self.accounts.values():
            if sa.key_id == kid:
                return sa.key.public_key()
        return None

    # ----- token issuing --------------------------------------------------------------------
    def _access_token(self, principal: str, lifetime: int = 3600) -> dict:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.access_tokens[token] = (principal, time.time() + lifetime)
            self.counters.access_tokens += 1
        return {"access_token": token, "expires_in": lifetime - 1, "token_type": "Bearer"}

    def id_token(self, email: str, audience: str) -> str:
        sa = self.service_account(email)
        now = int(time.time())
        with self._lock:
            self.counters.id_tokens += 1
        return jws.sign(
            {
                "iss": GOOGLE_ISSUER,
                "aud": audience,
                "azp": sa.unique_id,
                "sub": sa.unique_id,
                "email": email,
                "email_verified": True,
                "iat": now,
                "exp": now + self.id_token_lifetime,
            },
            self.google_key,
            self.google_kid,
        )

    def _caller(self, req: Request) -> str | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        entry = self.access_tokens.get(auth[len("Bearer ") :])
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def _maybe_fail(self, name: str) -> Response | None:
        with self._lock:
            if self.fail_next.get(name, 0) > 0:
                self.fail_next[name] -= 1
                return _error(503, "The service is currently unavailable.", "UNAVAILABLE")
        return None

    # ----- routing ---------------------------------------------------------------------------
    def _route(self, req: Request) -> Response:
        if req.path == "/" or req.path.startswith("/computeMetadata/"):
            return self._metadata(req)
        if req.path == "/o/oauth2/auth" and req.method == "GET":
            return self._authorize(req)
        if req.path == "/token" and req.method == "POST":
            form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
            if form.get("grant_type") == "authorization_code" or (
                form.get("refresh_token") in self.openid_refresh_tokens
            ):
                return self._openid_token(form, req.headers.get("authorization", ""))
            return self._token(req)
        if req.path == "/sts/v1/token" and req.method == "POST":
            return self._sts(req)
        if req.path.startswith("/v1/projects/-/serviceAccounts/"):
            return self._iam(req)
        if req.path == f"/v1/projects/{PROJECT_NUMBER}" and self._caller(req):
            return Response(200, {"projectNumber": PROJECT_NUMBER, "projectId": self.project_id})
        if req.path == "/oauth2/v3/certs":
            return Response(
                200,
                {"keys": [jws.jwk_from_public_key(self.google_key.public_key(), self.google_kid)]},
            )
        if req.path.startswith("/service_accounts/v1/jwk/"):
            sa = self.accounts.get(unquote(req.path.rsplit("/", 1)[1]))
            if sa is None:
                return _error(404, "Not found", "NOT_FOUND")
            return Response(
                200, {"keys": [jws.jwk_from_public_key(sa.key.public_key(), sa.key_id)]}
            )
        return _error(404, f"no fake for {req.method} {req.path}", "NOT_FOUND")

    def _metadata(self, req: Request) -> Response:
        if req.headers.get("metadata-flavor") != "Google":
            return Response(403, "Missing Metadata-Flavor:Google header", METADATA_FLAVOR)
        if self.metadata_account is None:
            return Response(404, "not on GCE", METADATA_FLAVOR)
        email = self.metadata_account
        path = req.path.removeprefix("/computeMetadata/v1/")
        if req.path == "/":
            return Response(200, "", METADATA_FLAVOR)
        if path == "project/project-id":
            return Response(200, self.project_id, METADATA_FLAVOR)
        if path == "universe/universe-domain":
            return Response(200, "googleapis.com", METADATA_FLAVOR)
        if path in ("instance/service-accounts/default/", "instance/service-accounts/default"):
            return Response(
                200,
                {
                    "email": email,
                    "aliases": ["default"],
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                },
                METADATA_FLAVOR,
            )
        if path == "instance/service-accounts/default/email":
            return Response(200, email, METADATA_FLAVOR)
        if path == "instance/service-accounts/default/token":
            return Response(200, self._access_token(email), METADATA_FLAVOR)
        if path == "instance/service-accounts/default/identity":
            audience = req.query.get("audience", [""])[0]
            if not audience:
                return Response(400, "audience parameter required", METADATA_FLAVOR)
            return Response(200, self.id_token(email, audience), METADATA_FLAVOR)
        return Response(404, f"no metadata {path}", METADATA_FLAVOR)

    def _token(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            user = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user is None:
                return Response(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                )
            return Response(
                200,
                {
                    **self._access_token(user),
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            )
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jose.verify(
                    form.get("assertion", ""),
                    self.service_account_public_key,
                    algorithms=["RS256"],
                    # google-auth signs for Google's own token URI whatever the key file says.
                    audience=[f"{self.url}/token", "https://oauth2.googleapis.com/token"],
                    issuers=list(self.accounts),
                )
            except jose.TokenError as e:
                return Response(400, {"error": "invalid_grant", "error_description": str(e)})
            email = claims["iss"]
            if "target_audience" in claims:
                return Response(200, {"id_token": self.id_token(email, claims["target_audience"])})
            return Response(200, self._access_token(email))
        return Response(400, {"error": "unsupported_grant_type"})

    # ----- installed-app sign-in (deployer login) -------------------------------------------
    def oauth_client(self, client_id: str) -> str:
        """Register a desktop OAuth client; return its secret."""
        return self.oauth_clients.setdefault(client_id, "GOCSPX-" + secrets.token_urlsafe(18))

    def user_id_token(self, email: str, client_id: str) -> str:
        now = int(time.time())
        with self._lock:
            self.counters.id_tokens += 1
        claims = {
            "iss": GOOGLE_ISSUER,
            "aud": client_id,
            "azp": client_id,
            "sub": str(abs(hash(email))),
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + self.id_token_lifetime,
        }
        return jws.sign(claims, self.google_key, self.google_kid)

    def _authorize(self, req: Request) -> Response:
        """The consent screen, already clicked through by `browser_user`: redirect with a code."""
        q = {k: v[0] for k, v in req.query.items()}
        scopes = set(q.get("scope", "").split())
        if q.get("client_id") not in self.oauth_clients or self.browser_user is None:
            return Response(400, "Error 401: invalid_client")
        if not {"openid", "https://www.googleapis.com/auth/userinfo.email"} <= scopes:
            return Response(400, "Error 400: invalid_scope")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return Response(400, "Error 400: PKCE required for installed apps")
        code = "4/0A" + secrets.token_urlsafe(24)
        self.auth_codes[code] = (
            self.browser_user,
            q["client_id"],
            q["code_challenge"],
            q.get("redirect_uri", ""),
        )
        sep = "&" if "?" in q.get("redirect_uri", "") else "?"
        location = f"{q.get('redirect_uri')}{sep}code={code}&state={q.get('state', '')}&scope="
        location += "+".join(sorted(scopes))
        return Response(302, "", {"Location": location})

    def _openid_token(self, form: dict[str, str], authorization: str) -> Response:
        if authorization.startswith("Basic "):  # client_secret_basic, as requests-oauthlib sends
            basic = base64.b64decode(authorization[len("Basic ") :]).decode()
            form["client_id"], _, form["client_secret"] = (unquote(p) for p in basic.partition(":"))
        client_id = form.get("client_id", "")
        if self.oauth_clients.get(client_id) != form.get("client_secret"):
            return Response(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        if form.get("grant_type") == "authorization_code":
            entry = self.auth_codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest())
            if (
                entry is None
                or entry[1] != client_id
                or challenge.rstrip(b"=").decode() != entry[2]
                or form.get("redirect_uri") != entry[3]
            ):
                return Response(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            email = entry[0]
            refresh = "1//0" + secrets.token_urlsafe(32)
            self.openid_refresh_tokens[refresh] = (email, client_id)
            extra = {"refresh_token": refresh, "refresh_token_expires_in": 604799}
        else:
            email, owner = self.openid_refresh_tokens[form["refresh_token"]]
            if owner != client_id:
                return Response(400, {"error": "unauthorized_client"})
            extra = {}
        return Response(
            200,
            {
                **self._access_token(email),
                **extra,
                "scope": "https://www.googleapis.com/auth/userinfo.email openid",
                "id_token": self.user_id_token(email, client_id),
            },
        )

    def revoke(self, refresh_token: str) -> None:
        self.openid_refresh_tokens.pop(refresh_token, None)

    # ----- Workload Identity Federation (GitHub Actions) -------------------------------------
    def github_oidc_token(self, repository: str, audience: str) -> str:
        """What GitHub Actions hands a job with `id-token: write`."""
        now = int(time.time())
        return jws.sign(
            {
                "iss": GITHUB_ISSUER,
                "aud": audience,
                "iat": now,
                "exp": now + 300,
                "sub": f"repo:{repository}:ref:refs/heads/main",
                "repository": repository,
            },
            self.github_key,
            "github-1",
        )

    def wif_principal(self, repository: str) -> str:
        return (
            f"principalSet://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/"
            f"workloadIdentityPools/github/attribute.repository/{repository}"
        )

    def external_account_file(self, subject_token_file: Path, path: Path) -> Path:
        """The credentials file google-github-actions/auth writes (no key inside)."""
        path.write_text(
            json.dumps(
                {
                    "type": "external_account",
                    "audience": WIF_AUDIENCE,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": f"{self.url}/sts/v1/token",
                    "credential_source": {"file": str(subject_token_file)},
                }
            )
        )
        return path

    def _sts(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return Response(400, {"error": "invalid_grant"})
        try:
            claims = jose.verify(
                form.get("subject_token", ""),
                lambda kid: self.github_key.public_key(),
                algorithms=["RS256"],
                audience=form.get("audience", ""),
                issuers=[GITHUB_ISSUER],
            )
        except jose.TokenError as e:
            return Response(400, {"error": "invalid_grant", "error_description": str(e)})
        if form.get("audience") != WIF_AUDIENCE:
            return Response(400, {"error": "invalid_target"})
        token = self._access_token(self.wif_principal(claims["repository"]))
        return Response(
            200,
            {
                "access_token": token["access_token"],
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": token["expires_in"],
            },
        )

    def _iam(self, req: Request) -> Response:
        target, _, method = unquote(req.path.rsplit("/", 1)[1]).partition(":")
        caller = self._caller(req)
        if caller is None:
            return _error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        permission = {
            "signBlob": "iam.serviceAccounts.signBlob",
            "signJwt": "iam.serviceAccounts.signJwt",
            "generateIdToken": "iam.serviceAccounts.getOpenIdToken",
            "generateAccessToken": "iam.serviceAccounts.getAccessToken",
        }.get(method)
        if permission is None:
            return _error(404, f"unknown method {method}", "NOT_FOUND")
        if target not in self.accounts or caller not in self.token_creators.get(target, set()):
            return _error(
                403,
                f"Permission '{permission}' denied on resource (or it may not exist).",
                "PERMISSION_DENIED",
            )
        if (failure := self._maybe_fail(method)) is not None:
            return failure
        sa = self.accounts[target]
        body = req.json()
        if method == "generateIdToken":
            return Response(200, {"token": self.id_token(target, body["audience"])})
        if method == "generateAccessToken":
            return Response(
                200,
                {
                    "accessToken": self._access_token(target)["access_token"],
                    "expireTime": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)
                    ),
                },
            )
        if method == "signJwt":
            with self._lock:
                self.counters.sign_jwt += 1
            return Response(
                200,
                {
                    "keyId": sa.key_id,
                    "signedJwt": jws.sign(json.loads(body["payload"]), sa.key, sa.key_id),
                },
            )
        with self._lock:
            self.counters.sign_blob += 1
        signature = jws.sign_bytes(base64.b64decode(body["payload"]), sa.key)
        return Response(
            200, {"keyId": sa.key_id, "signedBlob": base64.b64encode(signature).decode()}
        )

    def close(self) -> None:
        self.server.close()
