"""`gcloud` for the twin: the commands the deployer runs, answered from and applied to the twin
project's state, in gcloud's output formats. Anything else exits 2 naming the command.

Run as `python -m tests.twin.gcloud ARGS...` (the twin's bin/gcloud launcher does this).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.twin import cloudrun, podman
from tests.twin import state as st
from tests.twin.resources import CloudError, Context

OWNER = "owner@twin.example.com"
Command = Callable[[Context, list[str], dict[str, str]], int]


def fail(message: str, code: int = 1) -> int:
    print(f"ERROR: {message}", file=sys.stderr)
    return code


def out(value: object) -> int:
    print(json.dumps(value, indent=2))
    return 0


def split(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    words: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            valued = key not in SWITCHES and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            if not eq and valued:
                value = argv[i + 1]
                i += 1
            flags[key] = value
        else:
            words.append(a)
        i += 1
    return words, flags


# gcloud's flags take a value unless they are switches; these are the switches the deployer uses.
SWITCHES = {
    "quiet",
    "wait",
    "async",
    "versioning",
    "uniform-bucket-level-access",
    "public-access-prevention",
}


def _project_guard(ctx: Context, flags: dict[str, str], wanted: str | None = None) -> int | None:
    project = wanted or flags.get("project") or ctx.project_id
    if project != ctx.project_id:
        return fail(
            f"(gcloud) [{OWNER}] does not have permission to access projects instance "
            f"[{project}] (or it may not exist)"
        )
    return None


# ----- commands ----------------------------------------------------------------------------------


def projects_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    if (err := _project_guard(ctx, flags, words[2])) is not None:
        return err
    return out(
        {
            "projectId": ctx.project_id,
            "projectNumber": ctx.number,
            "lifecycleState": "ACTIVE",
            "name": ctx.project_id,
        }
    )


def billing_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    return out(
        {
            "billingEnabled": True,
            "billingAccountName": "billingAccounts/0TWIN0",
            "projectId": ctx.project_id,
        }
    )


def iam_policy(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    return out({"bindings": [{"role": "roles/owner", "members": [f"user:{OWNER}"]}], "version": 1})


def services_list(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    doc = ctx.doc()
    names = sorted(
        {*st.DEFAULT_SERVICES, *doc["services"]}
        | {r["service"] for r in st.resources(doc, "google_project_service").values()}
    )
    return out([{"config": {"name": n}, "state": "ENABLED"} for n in names])


def services_identity_create(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    """`gcloud beta services identity create` creates a service's agent
    (https://cloud.google.com/iam/docs/service-agents#create-service-agents)."""
    service = flags.get("service", "")
    if not st.api_enabled(ctx.doc(), service):
        return fail(f"Service {service} is not enabled for consumer project {ctx.project_id}.")
    short = service.split(".")[0]
    email = f"service-{ctx.number}@gcp-sa-{short}.iam.gserviceaccount.com"
    with ctx.twin.transaction() as doc:
        if email not in doc["agents"]:
            doc["agents"].append(email)
    print(f"Service identity created: {email}", file=sys.stderr)
    return out({"email": email})


def _gcs(ctx: Context) -> str:
    return ctx.doc()["endpoints"]["gcs"]


def buckets_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    name = words[3].removeprefix("gs://").rstrip("/")
    r = requests.get(f"{_gcs(ctx)}/storage/v1/b/{name}", timeout=30)
    if r.status_code != 200:
        return fail(f"(gcloud.storage.buckets.describe) gs://{name} not found: 404.")
    meta = ctx.doc().get("bucket_meta", {}).get(name, {})
    return out(
        {
            "name": name,
            "storage_url": f"gs://{name}/",
            "location": meta.get("location", "US-CENTRAL1"),
            "project_number": meta.get("project_number", ctx.number),
            "versioning_enabled": meta.get("versioning", False),
            "uniform_bucket_level_access": True,
        }
    )


def buckets_create(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    if (err := _project_guard(ctx, flags)) is not None:
        return err
    name = words[3].removeprefix("gs://").rstrip("/")
    r = requests.post(
        f"{_gcs(ctx)}/storage/v1/b",
        params={"project": ctx.project_id},
        json={"name": name},
        timeout=30,
    )
    if r.status_code == 409:
        return fail(f"HTTPError 409: The requested bucket name is not available: {name}")
    with ctx.twin.transaction() as doc:
        doc.setdefault("bucket_meta", {})[name] = {
            "location": flags.get("location", "").upper(),
            "project_number": ctx.number,
        }
    print(f"Creating gs://{name}/...", file=sys.stderr)
    return 0


def buckets_update(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    name = words[3].removeprefix("gs://").rstrip("/")
    with ctx.twin.transaction() as doc:
        doc.setdefault("bucket_meta", {}).setdefault(name, {})["versioning"] = "versioning" in flags
    return 0


def images_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    image = words[4]
    if image not in ctx.doc()["images"]:
        return fail(f"(gcloud.artifacts.docker.images.describe) Image not found: {image}")
    return out({"image_summary": {"fully_qualified_digest": f"{image}@sha256:{'0' * 64}"}})


def builds_submit(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    """Cloud Build, as the twin runs it: podman builds image/Dockerfile from the uploaded
    source and pushes to the project's Artifact Registry repository, which must exist."""
    if (err := _project_guard(ctx, flags)) is not None:
        return err
    image = flags.get("substitutions", "").split("_IMAGE=", 1)[-1].split(",")[0]
    host, project, repo = image.split("/")[:3]
    doc = ctx.doc()
    repos = {
        r.get("registry_uri")
        for r in st.resources(doc, "google_artifact_registry_repository").values()
    }
    if f"{host}/{project}/{repo}" not in repos:
        return fail(f'name unknown: Repository "{repo}" not found')
    root = Path(words[2])
    # Cloud Build runs on Google's network, not behind the owner's shell: drop the twin's proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE", "PYTHONPATH"):
        os.environ.pop(name, None)
    print("Creating temporary archive of the source ...", flush=True)
    podman.build_image(root, root / "image" / "Dockerfile", image)
    print(f"PUSH {image}", flush=True)
    with ctx.twin.transaction() as d:
        if image not in d["images"]:
            d["images"].append(image)
    print("DONE", flush=True)
    return 0


def _job(ctx: Context, name: str) -> dict | None:
    for job in st.resources(ctx.doc(), "google_cloud_run_v2_job").values():
        if job["name"] == name:
            return job
    return None


def jobs_execute(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    job = _job(ctx, words[3])
    if job is None:
        return fail(f"(gcloud.run.jobs.execute) Job [{words[3]}] could not be found.")
    execution = f"{job['name']}-{time.strftime('%H%M%S')}"
    print(f"Creating execution... {execution}", flush=True)
    try:
        cloudrun.execute(ctx, job, execution)
    except CloudError as e:
        print(e.detail, file=sys.stderr)
        return fail(f"(gcloud.run.jobs.execute) {e.summary}")
    return out({"metadata": {"name": execution}, "status": {"succeededCount": 1}})


def services_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    for svc in st.resources(ctx.doc(), "google_cloud_run_v2_service").values():
        if svc["name"] == words[3]:
            container = (svc["template"][0]["containers"] or [{}])[0]
            ready = svc.get("latest_ready_revision") or ""
            return out(
                {
                    "metadata": {"name": svc["name"]},
                    "spec": {
                        "template": {"spec": {"containers": [{"image": container.get("image")}]}}
                    },
                    "status": {
                        "url": svc.get("uri"),
                        "latestReadyRevisionName": ready.rsplit("/", 1)[-1],
                        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    },
                }
            )
    return fail(f"(gcloud.run.services.describe) Cannot find service [{words[3]}]")


def sql_patch(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    from tests.twin.cloudsql import set_activation

    set_activation(ctx, words[3], flags.get("activation-policy", "ALWAYS"))
    return 0


def sql_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    """A stopped instance stays RUNNABLE with activation policy NEVER, as in the Admin API."""
    doc = ctx.doc()
    for inst in st.resources(doc, "google_sql_database_instance").values():
        if inst["name"] == words[3]:
            settings = (inst.get("settings") or [{}])[0]
            live = doc.get("sql_activation", {}).get(inst["name"])
            policy = live or settings.get("activation_policy") or "ALWAYS"
            return out(
                {
                    "name": inst["name"],
                    "connectionName": inst.get("connection_name"),
                    "state": "RUNNABLE",
                    "settings": {"activationPolicy": policy, "tier": settings.get("tier")},
                }
            )
    return fail(
        "(gcloud.sql.instances.describe) HTTPError 404: The Cloud SQL instance does not exist."
    )


ORGANISATION = {"id": "555", "domain": "twin.example.com"}


def run_regions(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    """Cloud Run's regions, as `gcloud run regions list` prints them; the twin offers the ones
    the deployer's own table lists (deployer/limits.json, dated, with its sources)."""
    from deployer import limits

    return out(
        [
            {"locationId": r, "name": f"projects/{ctx.project_id}/locations/{r}"}
            for r in limits.regions()
        ]
    )


def get_ancestors(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    """The twin project sits in an organisation whose domain its members share."""
    if (err := _project_guard(ctx, flags, words[2])) is not None:
        return err
    return out(
        [
            {"id": ctx.project_id, "type": "project"},
            {"id": ORGANISATION["id"], "type": "organization"},
        ]
    )


def organization_describe(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    return out(
        {"displayName": ORGANISATION["domain"], "name": f"organizations/{ORGANISATION['id']}"}
    )


def vpc_peerings_list(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    """Private services connections of a network (gcloud services vpc-peerings list)."""
    network = flags.get("network", "")
    found = []
    for c in st.resources(ctx.doc(), "google_service_networking_connection").values():
        if str(c.get("network", "")).rsplit("/", 1)[-1] == network:
            found.append(
                {
                    "network": f"projects/{ctx.number}/global/networks/{network}",
                    "peering": c.get("peering"),
                    "reservedPeeringRanges": c.get("reserved_peering_ranges") or [],
                    "service": "services/servicenetworking.googleapis.com",
                }
            )
    return out(found)


def peerings_delete(ctx: Context, words: list[str], flags: dict[str, str]) -> int:
    network = flags.get("network", "")
    with ctx.twin.transaction() as doc:
        peerings = doc.setdefault("peerings", {}).get(network, [])
        if words[4] not in peerings:
            return fail(
                f"(gcloud.compute.networks.peerings.delete) Could not fetch resource: - The "
                f"peering '{words[4]}' was not found in network '{network}'."
            )
        peerings.remove(words[4])
    print(f"Updated [.../global/networks/{network}].", file=sys.stderr)
    return 0


COMMANDS: dict[str, Command] = {
    "projects describe": projects_describe,
    "billing projects describe": billing_describe,
    "projects get-iam-policy": iam_policy,
    "services list": services_list,
    "beta services identity": services_identity_create,
    "storage buckets describe": buckets_describe,
    "storage buckets create": buckets_create,
    "storage buckets update": buckets_update,
    "artifacts docker images": images_describe,
    "builds submit": builds_submit,
    "run jobs execute": jobs_execute,
    "run services describe": services_describe,
    "sql instances patch": sql_patch,
    "sql instances describe": sql_describe,
    "projects get-ancestors": get_ancestors,
    "run regions list": run_regions,
    "organizations describe": organization_describe,
    "services vpc-peerings list": vpc_peerings_list,
    "compute networks peerings": peerings_delete,
}


def main(argv: list[str]) -> int:
    words, flags = split(argv)
    if words[:1] == ["version"]:
        return out({"Google Cloud SDK": "540.0.0", "core": "2026.11.01"})
    if words[:2] == ["auth", "list"]:
        return out([{"account": OWNER, "status": "ACTIVE"}])
    if words[:3] == ["auth", "application-default", "print-access-token"]:
        print("ya29.twin-owner")
        return 0
    ctx = Context.from_env()
    for prefix in sorted(COMMANDS, key=len, reverse=True):
        n = len(prefix.split())
        if " ".join(words[:n]) == prefix:
            return COMMANDS[prefix](ctx, words, flags)
    return fail(f"the twin's gcloud does not know: gcloud {' '.join(argv)}", 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
