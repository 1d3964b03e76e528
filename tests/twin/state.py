"""The twin project's state: one JSON document in TWIN_DIR, shared by the stand-in provider's
worker, the fake `gcloud` and the tests, each change made under an exclusive file lock.

It holds what Google would hold for one project: the resources Terraform created (keyed by type
and id, as their last applied state), the APIs turned on, the service agents that exist, the
images in Artifact Registry, and where each Cloud Run service's current revision listens.
Questions such as "is this API on" or "does this account hold that role" are answered from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# APIs a new project has on before anyone enables anything ("Services enabled by default",
# https://cloud.google.com/service-usage/docs/enabled-service#default).
DEFAULT_SERVICES = (
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudapis.googleapis.com",
    "clouddebugger.googleapis.com",
    "cloudtrace.googleapis.com",
    "datastore.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "servicemanagement.googleapis.com",
    "serviceusage.googleapis.com",
    "sql-component.googleapis.com",
    "storage-api.googleapis.com",
    "storage-component.googleapis.com",
    "storage.googleapis.com",
)

# flock locks belong to an open file: a read inside this process's own transaction must not
# wait for the lock that transaction holds.
_held = threading.local()

# Resource types whose ids the IAM checks look up by email or name.
SERVICE_ACCOUNT = "google_service_account"


def project_number(project_id: str) -> str:
    """A stable 12-digit project number for a project id (real numbers are opaque too)."""
    digest = int(hashlib.sha256(project_id.encode()).hexdigest(), 16)
    return str(100000000000 + digest % 900000000000)


@dataclass
class TwinState:
    root: Path

    @property
    def path(self) -> Path:
        return self.root / "state.json"

    @classmethod
    def from_env(cls) -> TwinState:
        return cls(Path(os.environ["TWIN_DIR"]))

    def create(self, project_id: str, region: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {
            "project": {
                "id": project_id,
                "number": project_number(project_id),
                "region": region,
            },
            "services": [],
            "agents": [],
            "resources": {},
            "deleted": {},
            "images": [],
            "routes": {},
            "executions": [],
            "revisions": [],
            "secrets": {},
            "endpoints": {},
        }
        self.path.write_text(json.dumps(doc, indent=1))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """The document, locked; written back when the block ends without an exception."""
        with open(self.root / "state.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _held.depth = getattr(_held, "depth", 0) + 1
            try:
                doc = json.loads(self.path.read_text())
                yield doc
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(doc, indent=1))
                tmp.replace(self.path)
            finally:
                _held.depth -= 1
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        if getattr(_held, "depth", 0):
            return json.loads(self.path.read_text())
        with open(self.root / "state.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                return json.loads(self.path.read_text())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# ----- questions answered from a state document ------------------------------------------------


def project(doc: dict[str, Any]) -> dict[str, str]:
    return doc["project"]


def resources(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return doc["resources"].get(kind, {})


def api_enabled(doc: dict[str, Any], service: str) -> bool:
    if service in DEFAULT_SERVICES or service in doc["services"]:
        return True
    return any(
        r.get("service") == service for r in resources(doc, "google_project_service").values()
    )


def service_account_exists(doc: dict[str, Any], email: str) -> bool:
    if email in doc["agents"]:
        return True
    return any(r.get("email") == email for r in resources(doc, SERVICE_ACCOUNT).values())


def bindings(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(resource, role, member) for every IAM member resource: resource is `project`,
    `sa:EMAIL`, `secret:SECRET_ID`, `bucket:NAME`, `run:SERVICE` or `iap-run:SERVICE`."""
    out: list[tuple[str, str, str]] = []
    for r in resources(doc, "google_project_iam_member").values():
        out.append(("project", r["role"], r["member"]))
    for r in resources(doc, "google_service_account_iam_member").values():
        email = str(r["service_account_id"]).rsplit("/", 1)[-1]
        out.append((f"sa:{email}", r["role"], r["member"]))
    for r in resources(doc, "google_secret_manager_secret_iam_member").values():
        out.append((f"secret:{str(r['secret_id']).rsplit('/', 1)[-1]}", r["role"], r["member"]))
    for r in resources(doc, "google_storage_bucket_iam_member").values():
        out.append((f"bucket:{str(r['bucket']).removeprefix('b/')}", r["role"], r["member"]))
    for r in resources(doc, "google_cloud_run_v2_service_iam_member").values():
        out.append((f"run:{str(r['name']).rsplit('/', 1)[-1]}", r["role"], r["member"]))
    for r in resources(doc, "google_iap_web_cloud_run_service_iam_member").values():
        name = str(r["cloud_run_service_name"]).rsplit("/", 1)[-1]
        out.append((f"iap-run:{name}", r["role"], r["member"]))
    return out


def holds(doc: dict[str, Any], member: str, role: str, *on: str) -> bool:
    """Does member hold role on any of the resources `on` (or on the project)?"""
    scopes = {"project", *on}
    return any(b == (s, role, member) for b in bindings(doc) for s in scopes)


def members_with(doc: dict[str, Any], role: str, on: str) -> set[str]:
    return {m for (s, r, m) in bindings(doc) if s in {on, "project"} and r == role}


def _blocks(value: Any) -> list[dict[str, Any]]:
    """A nested block as stored: one object, or Terraform's list of one."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value or [] if isinstance(v, dict)]


def programmatic_clients(doc: dict[str, Any], service: str) -> set[str]:
    """OAuth clients allowlisted for programmatic access to the Cloud Run service `service`
    (`google_iap_settings` on `projects/N/iap_web/cloud_run-REGION/services/SERVICE`,
    access_settings.oauth_settings.programmatic_clients): IAP then admits a person's Google ID
    token whose aud is one of them (https://cloud.google.com/iap/docs/authentication-howto)."""
    out: set[str] = set()
    for r in resources(doc, "google_iap_settings").values():
        if str(r.get("name", "")).rsplit("/services/", 1)[-1] != service:
            continue
        for access in _blocks(r.get("access_settings")):
            for oauth in _blocks(access.get("oauth_settings")):
                out.update(str(c) for c in oauth.get("programmatic_clients") or [])
    return out
