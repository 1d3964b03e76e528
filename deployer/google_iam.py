"""IAM Service Account Credentials API's signJwt, for the client side.

`deployer token` impersonates the client service account and has IAM sign the JWT IAP accepts
(the server signs GCS URLs with its own signBlob call, in deployer/server/gcs_signing.py). The
base URL is a setting so tests can point it at a local stand-in that speaks the same REST API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

IAM_CREDENTIALS_ENDPOINT_ENV = "IAM_CREDENTIALS_ENDPOINT"
IAM_CREDENTIALS_ENDPOINT_DEFAULT = "https://iamcredentials.googleapis.com"


class IamError(RuntimeError):
    """The IAM Credentials API refused or failed; `status` is its HTTP status."""

    def __init__(self, status: int, message: str, email: str) -> None:
        super().__init__(message)
        self.status = status
        self.email = email


def iam_endpoint(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get(IAM_CREDENTIALS_ENDPOINT_ENV) or IAM_CREDENTIALS_ENDPOINT_DEFAULT).rstrip("/")


class IamCredentialsClient:
    """Calls IAM Credentials with an authorized session (google.auth AuthorizedSession)."""

    def __init__(self, session: requests.Session, endpoint: str | None = None) -> None:
        self.session = session
        self.endpoint = endpoint or iam_endpoint()

    def _call(self, email: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.endpoint}/v1/projects/-/serviceAccounts/{quote(email, safe='@.')}:{method}"
        response = self.session.post(url, json=body, timeout=30)
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise IamError(response.status_code, message, email)
        return response.json()

    def sign_jwt(self, email: str, claims: Mapping[str, Any]) -> str:
        doc = self._call(email, "signJwt", {"payload": json.dumps(dict(claims))})
        return doc["signedJwt"]
