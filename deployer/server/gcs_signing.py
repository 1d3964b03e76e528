"""Large artifacts on Cloud Run: sign GCS multipart-upload URLs through IAM signBlob.

Cloud Run rejects HTTP/1 request bodies over 32 MiB, so big artifacts must not stream through
the server. MLflow's proxied multipart upload has the server hand out signed URLs, one per part,
and the client PUTs the parts straight to GCS. MLflow signs those URLs with the storage client's
credentials, which on Cloud Run come from the metadata server and hold no private key, so it
fails ("you need a private key to sign credentials"; mlflow issue #21847).

Responses are capped the same way, and MLflow streams proxied downloads with a Content-Length,
so big downloads must not pass through the server either: the repository also hands out signed
GET URLs (MLflow's multipart-download contract, which it implements only for S3), and clients
fetch byte ranges straight from GCS.

We register, for the `gs` scheme in the server process, MLflow's own GCS repository given a
storage client whose credentials sign through IAM `signBlob` as the runtime service account
(which needs `roles/iam.serviceAccountTokenCreator` on itself; Terraform grants exactly that).
Nothing of MLflow is copied or patched: only the client it is handed differs, plus the one
download method MLflow defines for repositories and leaves to each store.
"""

from __future__ import annotations

import base64
import datetime
import functools
import posixpath
from typing import Any
from urllib.parse import quote

import google.auth
import google.auth.credentials
from google.auth.transport.requests import AuthorizedSession, Request
from mlflow.entities.presigned_download import PresignedDownloadUrlResponse
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import MultipartDownloadMixin
from mlflow.store.artifact.gcs_artifact_repo import GCSArtifactRepository

from deployer.server.settings import ServerSettings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Signed download URLs are bearer credentials to one object: MLflow lets the client ask for up
# to 7 days; we hand out at most this many seconds, enough to start every ranged GET.
MAX_PRESIGNED_SECONDS = 900


def sign_blob(session: AuthorizedSession, endpoint: str, email: str, payload: bytes) -> bytes:
    """IAM Credentials `signBlob`: the service account's Google-held key signs `payload`.

    https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signBlob
    (google.auth.iam.Signer does the same call, but only at Google's fixed address.)
    """
    url = f"{endpoint}/v1/projects/-/serviceAccounts/{quote(email, safe='@.')}:signBlob"
    response = session.post(url, json={"payload": base64.b64encode(payload).decode()}, timeout=30)
    if response.status_code != 200:
        raise MlflowException(
            f"IAM signBlob as {email} failed ({response.status_code}): {response.text[:200]}"
        )
    return base64.b64decode(response.json()["signedBlob"])


class IamSigningCredentials(google.auth.credentials.Signing, google.auth.credentials.Credentials):
    """Bearer credentials of the runtime service account that can also sign, through IAM."""

    def __init__(
        self, base: google.auth.credentials.Credentials, email: str, iam_endpoint: str
    ) -> None:
        super().__init__()
        self._base = base
        self._email = email
        self._session = AuthorizedSession(base)
        self._endpoint = iam_endpoint

    def refresh(self, request: Any) -> None:
        self._base.refresh(request)
        self.token = self._base.token
        self.expiry = self._base.expiry

    def sign_bytes(self, message: bytes) -> bytes:
        return sign_blob(self._session, self._endpoint, self._email, message)

    @property
    def signer_email(self) -> str:
        return self._email

    @property
    def signer(self) -> Any:
        return self


@functools.cache
def signing_storage_client(email: str, iam_endpoint: str, project: str | None) -> Any:
    from google.cloud import storage

    base, default_project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    credentials = IamSigningCredentials(base, email, iam_endpoint)
    credentials.refresh(Request())
    return storage.Client(project=project or default_project or "mlflow", credentials=credentials)


class SigningGCSArtifactRepository(GCSArtifactRepository, MultipartDownloadMixin):
    """MLflow's GCS artifact repository, with a client that signs URLs through IAM."""

    settings: ServerSettings  # set by `install` on the subclass it registers

    def __init__(self, artifact_uri: str, client: Any = None, *args: Any, **kwargs: Any) -> None:
        s = self.settings
        client = client or signing_storage_client(
            s.signing_service_account or "", s.iam_credentials_endpoint, s.google_cloud_project
        )
        super().__init__(artifact_uri, client, *args, **kwargs)

    def get_download_presigned_url(
        self, artifact_path: str, expiration: int = 300
    ) -> PresignedDownloadUrlResponse:
        bucket_name, root = self.parse_gcs_uri(self.artifact_uri)
        blob = self.client.bucket(bucket_name).get_blob(posixpath.join(root, artifact_path))
        if blob is None:
            raise MlflowException.invalid_parameter_value(f"No artifact at {artifact_path!r}")
        seconds = max(1, min(int(expiration), MAX_PRESIGNED_SECONDS))
        url = blob.generate_signed_url(
            method="GET", version="v4", expiration=datetime.timedelta(seconds=seconds)
        )
        return PresignedDownloadUrlResponse(url=url, headers={}, file_size=blob.size)


def install(settings: ServerSettings) -> bool:
    """Use the signing repository for gs:// in this process when a signer is configured."""
    if settings.signing_service_account is None:
        return False
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry

    repository = type(
        "SigningGCSArtifactRepository",
        (SigningGCSArtifactRepository,),
        {"settings": settings},
    )
    _artifact_repository_registry.register("gs", repository)
    return True
