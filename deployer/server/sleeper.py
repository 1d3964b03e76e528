"""The sleeper job: stop the Cloud SQL instance when nobody has used MLflow for a while.

Cloud Scheduler runs this (`python -m deployer.server.sleeper`, the server image) every few
minutes as a Cloud Run job. It reads the time of the last request from the object the server
touches (LAST_REQUEST_OBJECT, see wake.py) and, when that is older than DB_SLEEP_AFTER_MINUTES,
sets the instance's activation policy to NEVER through the Cloud SQL Admin API. The server
starts it again on the next request.

Backups: Cloud SQL takes its automated backups while an instance runs, and takes one more when
the instance is stopped, so every change made before sleeping is in a backup; nothing changes
while it sleeps (https://cloud.google.com/sql/docs/postgres/backup-recovery/backups, "Automated
backups"). So the job takes no on-demand backup of its own (those are never deleted
automatically and would pile up, one a night).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deployer.server.wake import AdminApi, parse_connection_name

Reader = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Decision:
    stop: bool
    reason: str


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def decide(
    instance: Mapping[str, Any],
    pending: list[dict],
    last_request: dt.datetime | None,
    now: dt.datetime,
    sleep_after_minutes: int,
) -> Decision:
    policy = instance.get("settings", {}).get("activationPolicy")
    if sleep_after_minutes <= 0:
        return Decision(False, "sleep is off (DB_SLEEP_AFTER_MINUTES=0)")
    if policy != "ALWAYS":
        return Decision(False, f"already asleep (activation policy {policy})")
    if pending:
        kinds = ", ".join(sorted({op.get("operationType", "?") for op in pending}))
        return Decision(False, f"an operation is under way ({kinds}); looking again next time")
    # No request recorded yet: idle since the instance was created.
    since = last_request or _parse_time(instance.get("createTime")) or now
    idle_minutes = (now - since).total_seconds() / 60
    if idle_minutes < sleep_after_minutes:
        return Decision(
            False, f"in use: last request {idle_minutes:.0f} min ago (< {sleep_after_minutes})"
        )
    return Decision(True, f"idle for {idle_minutes:.0f} min (>= {sleep_after_minutes}): stopping")


def read_last_request(url: str, reader: Reader | None = None) -> dt.datetime | None:
    if not url:
        return None
    bucket, _, name = url.removeprefix("gs://").partition("/")
    return _parse_time((reader or _gcs_read)(bucket, name))


def _gcs_read(bucket: str, name: str) -> str | None:
    from google.cloud import storage

    try:
        return storage.Client().bucket(bucket).blob(name).download_as_text()
    except Exception as e:  # google-api-core's NotFound (a dependency of ours only through GCS)
        if getattr(e, "code", None) == 404:
            return None  # no request recorded yet
        raise


def run(
    env: Mapping[str, str],
    api: AdminApi | None = None,
    reader: Reader | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Decision:
    minutes = int(env.get("DB_SLEEP_AFTER_MINUTES") or "0")
    project, instance_name = parse_connection_name(env.get("CLOUD_SQL_CONNECTION_NAME", ""))
    api = api or AdminApi(project, instance_name)
    url = env.get("LAST_REQUEST_OBJECT", "")
    instance = api.get()
    pending = api.pending_operations()
    decision = decide(instance, pending, read_last_request(url, reader), now(), minutes)
    if decision.stop:
        # Read again right before stopping: a request may have come in meanwhile.
        decision = decide(instance, pending, read_last_request(url, reader), now(), minutes)
    if decision.stop:
        op = api.set_activation_policy("NEVER")
        return Decision(True, f"{decision.reason} (operation {op.get('name', '?')})")
    return decision


def main() -> int:
    try:
        decision = run(os.environ)
    except Exception as e:
        print(f"sleeper: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    print(f"sleeper: {decision.reason}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
