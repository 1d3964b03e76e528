"""A local Cloud SQL Admin API (v1) for one instance, backed by a real PostgreSQL.

Speaks the wire format the sleeping database uses
(https://cloud.google.com/sql/docs/postgres/admin-api/rest/v1/instances,
.../rest/v1/operations): GET an instance, PATCH its settings.activationPolicy (answered with a
PENDING `sql#operation`, carried out in the background: NEVER stops PostgreSQL, ALWAYS starts
it), GET or list operations. A stopped instance stays "RUNNABLE" with policy NEVER, as in the
real API, whose state enum has no "stopped".
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable

from tests.support.http import LocalHttpServer, Request, Response
from tests.support.postgres import Postgres


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeSqlAdmin:
    def __init__(
        self,
        pg: Postgres,
        project: str,
        instance: str,
        start_delay: float = 0.0,
        principal_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.pg = pg
        self.project = project
        self.instance = instance
        self.start_delay = start_delay
        self.policy = "ALWAYS"
        self.create_time = _now()
        self.operations: list[dict] = []
        self.patches: list[str] = []
        # Bearer token -> caller; None accepts any caller (unit tests without google-auth).
        self.principal_of = principal_of
        self.callers: list[str] = []
        self._lock = threading.Lock()
        self.server = LocalHttpServer(self._route)
        self.endpoint = self.server.url

    def _instance_doc(self) -> dict:
        return {
            "kind": "sql#instance",
            "name": self.instance,
            "project": self.project,
            "state": "RUNNABLE",
            "databaseVersion": "POSTGRES_16",
            "createTime": self.create_time,
            "connectionName": f"{self.project}:us-central1:{self.instance}",
            "settings": {
                "kind": "sql#settings",
                "activationPolicy": self.policy,
                "tier": "db-f1-micro",
            },
        }

    def _route(self, req: Request) -> Response:
        if self.principal_of is not None:
            token = req.headers.get("authorization", "").removeprefix("Bearer ")
            caller = self.principal_of(token)
            if caller is None:
                message = "Request had invalid authentication credentials."
                return Response(
                    401, {"error": {"code": 401, "message": message, "status": "UNAUTHENTICATED"}}
                )
            self.callers.append(caller)
        base = f"/v1/projects/{self.project}"
        path = req.path.split("?")[0]
        if path == f"{base}/instances/{self.instance}":
            if req.method == "GET":
                return Response(200, self._instance_doc())
            if req.method == "PATCH":
                return self._patch(req)
        if path == f"{base}/operations" and req.method == "GET":
            mine = [
                op for op in self.operations if op["targetId"] == req.query.get("instance", [""])[0]
            ]
            return Response(200, {"kind": "sql#operationsList", "items": list(reversed(mine))})
        if path.startswith(f"{base}/operations/") and req.method == "GET":
            name = path.rsplit("/", 1)[1]
            for op in self.operations:
                if op["name"] == name:
                    return Response(200, op)
        return Response(
            404, {"error": {"code": 404, "message": f"not found: {path}", "status": "NOT_FOUND"}}
        )

    def _patch(self, req: Request) -> Response:
        policy = req.json().get("settings", {}).get("activationPolicy")
        if policy not in ("ALWAYS", "NEVER"):
            return Response(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "Invalid request",
                        "status": "INVALID_ARGUMENT",
                    }
                },
            )
        op = {
            "kind": "sql#operation",
            "name": str(uuid.uuid4()),
            "status": "PENDING",
            "operationType": "UPDATE",
            "insertTime": _now(),
            "targetId": self.instance,
            "targetProject": self.project,
            "targetLink": f"{self.endpoint}/v1/projects/{self.project}/instances/{self.instance}",
            "selfLink": "",
        }
        op["selfLink"] = f"{self.endpoint}/v1/projects/{self.project}/operations/{op['name']}"
        with self._lock:
            self.operations.append(op)
            self.policy = policy
            self.patches.append(policy)
        threading.Thread(target=self._carry_out, args=(op, policy), daemon=True).start()
        return Response(200, dict(op))

    def _carry_out(self, op: dict, policy: str) -> None:
        op["status"] = "RUNNING"
        with self._lock:
            running = (self.pg.data / "postmaster.pid").exists()
            if policy == "NEVER" and running:
                self.pg.stop()
            elif policy == "ALWAYS" and not running:
                time.sleep(self.start_delay)
                self.pg.start()
        op["status"] = "DONE"
        op["endTime"] = _now()

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while any(op["status"] != "DONE" for op in self.operations):
            if time.monotonic() > deadline:
                raise TimeoutError("Cloud SQL operations still running")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.close()
