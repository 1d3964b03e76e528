"""The Cloud SQL Admin API (v1) of the twin project, the part a sleeping database uses
(https://cloud.google.com/sql/docs/postgres/admin-api/rest/v1/instances and .../operations):
GET an instance, PATCH its settings.activationPolicy (a `sql#operation`, carried out at once:
NEVER stops the instance's PostgreSQL, ALWAYS starts it), GET and list operations.

The caller is the holder of the bearer token; it needs cloudsql.instances.get (GET) or
cloudsql.instances.update (PATCH) through a role the twin's IAM grants it: roles/owner,
roles/cloudsql.admin, or a custom role listing the permission (IAM conditions are not modelled).
A stopped instance stays "RUNNABLE" with policy NEVER, as in the real API.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from tests.support.http import Request, Response
from tests.twin import state as st
from tests.twin.cloudsql import set_activation
from tests.twin.resources import Context
from tests.twin.state import TwinState

BUILTIN = {
    "roles/owner": {"cloudsql.instances.get", "cloudsql.instances.update"},
    "roles/cloudsql.admin": {"cloudsql.instances.get", "cloudsql.instances.update"},
    "roles/cloudsql.viewer": {"cloudsql.instances.get"},
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(code: int, status: str, message: str) -> Response:
    return Response(code, {"error": {"code": code, "message": message, "status": status}})


def permissions_of(doc: dict, member: str) -> set[str]:
    custom = {
        r["name"]: set(r.get("permissions") or [])
        for r in st.resources(doc, "google_project_iam_custom_role").values()
    }
    held: set[str] = set()
    for scope, role, who in st.bindings(doc):
        if scope == "project" and who == member:
            held |= BUILTIN.get(role, set()) | custom.get(role, set())
    return held


class SqlAdmin:
    def __init__(self, twin: TwinState, caller_of: Callable[[Request], str | None]) -> None:
        self.twin = twin
        self.caller_of = caller_of
        self.operations: list[dict] = []

    def handles(self, req: Request) -> bool:
        parts = req.path.split("/")
        return (
            req.path.startswith("/v1/projects/")
            and len(parts) > 4
            and parts[4]
            in (
                "instances",
                "operations",
            )
        )

    def route(self, req: Request) -> Response:
        caller = self.caller_of(req)
        if caller is None:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        member = (
            "serviceAccount:" if caller.endswith(".gserviceaccount.com") else "user:"
        ) + caller
        doc = self.twin.read()
        parts = req.path.split("/")
        project, kind = parts[3], parts[4]
        if kind == "operations":
            if len(parts) > 5:
                found = [op for op in self.operations if op["name"] == parts[5]]
                return (
                    Response(200, found[0])
                    if found
                    else _error(404, "NOT_FOUND", "no such operation")
                )
            wanted = req.query.get("instance", [""])[0]
            return Response(
                200,
                {
                    "kind": "sql#operationsList",
                    "items": [op for op in reversed(self.operations) if op["targetId"] == wanted],
                },
            )
        name = parts[5] if len(parts) > 5 else ""
        instance = next(
            (
                i
                for i in st.resources(doc, "google_sql_database_instance").values()
                if i["name"] == name
            ),
            None,
        )
        needed = "cloudsql.instances.update" if req.method == "PATCH" else "cloudsql.instances.get"
        if project != doc["project"]["id"] or needed not in permissions_of(doc, member):
            return _error(
                403,
                "PERMISSION_DENIED",
                f"The client is not authorized to make this request. ({member} lacks {needed})",
            )
        if instance is None:
            return _error(404, "NOT_FOUND", f"The Cloud SQL instance {name} does not exist.")
        if req.method == "PATCH":
            return self._patch(req, doc, instance)
        return Response(200, self._doc(doc, instance))

    def _doc(self, doc: dict, instance: dict) -> dict:
        policy = doc.get("sql_activation", {}).get(instance["name"], "ALWAYS")
        settings = (instance.get("settings") or [{}])[0]
        return {
            "kind": "sql#instance",
            "name": instance["name"],
            "project": doc["project"]["id"],
            "state": "RUNNABLE",
            "databaseVersion": instance.get("database_version"),
            "connectionName": instance["connection_name"],
            "createTime": "2026-11-25T00:00:00.000Z",
            "settings": {"activationPolicy": policy, "tier": settings.get("tier")},
        }

    def _patch(self, req: Request, doc: dict, instance: dict) -> Response:
        policy = (req.json().get("settings") or {}).get("activationPolicy")
        if policy not in ("ALWAYS", "NEVER"):
            return _error(400, "INVALID_ARGUMENT", "Invalid request")
        op = {
            "kind": "sql#operation",
            "name": str(uuid.uuid4()),
            "status": "RUNNING",
            "operationType": "UPDATE",
            "insertTime": _now(),
            "targetId": instance["name"],
            "targetProject": doc["project"]["id"],
        }
        self.operations.append(op)
        ctx = Context(self.twin, doc["project"]["id"], doc["project"]["region"])
        set_activation(ctx, instance["name"], policy)
        op["status"] = "DONE"
        op["endTime"] = _now()
        return Response(200, dict(op))
