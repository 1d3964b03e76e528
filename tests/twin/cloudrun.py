"""Cloud Run services and jobs of the twin: each revision is the image run by podman as Cloud Run
runs it (https://cloud.google.com/run/docs/container-contract): `$PORT`, the template's env with
secrets resolved, the Cloud SQL socket folder mounted at /cloudsql, the image's own user.

A service apply waits for the startup probe and fails, as the provider does, when the revision
does not become ready; the previous revision keeps serving until a new one is. Twin deviations:
containers share the host network, so each revision gets its own free `$PORT` instead of 8080.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

from tests.twin import podman
from tests.twin import state as st
from tests.twin.resources import Behaviour, CloudError, Context, register

DEFAULT_PROBE_BUDGET = 240  # a TCP startup probe by default: 240 s (container contract).


def _one(block: Any) -> dict:
    return (block or [{}])[0] or {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret_value(doc: dict, ref: dict) -> str | None:
    secret_id = str(ref.get("secret", "")).rsplit("/", 1)[-1]
    versions = doc["secrets"].get(secret_id) or []
    version = ref.get("version") or "latest"
    if version == "latest":
        live = [v for v in versions if v is not None]
        return live[-1] if live else None
    index = int(version) - 1
    return versions[index] if 0 <= index < len(versions) else None


def container_env(doc: dict, container: dict, account: str, where: str) -> dict[str, str]:
    """The container's env as Cloud Run gives it: plain values, and secrets read with the
    revision's service account, which must hold Secret Accessor on each
    (https://cloud.google.com/run/docs/configuring/services/secrets#access-secret)."""
    env: dict[str, str] = {}
    for i, item in enumerate(container.get("env") or []):
        ref = _one(_one(item.get("value_source")).get("secret_key_ref"))
        if not ref:
            env[item["name"]] = item.get("value") or ""
            continue
        secret_id = str(ref.get("secret", "")).rsplit("/", 1)[-1]
        number = doc["project"]["number"]
        if not st.holds(
            doc,
            f"serviceAccount:{account}",
            "roles/secretmanager.secretAccessor",
            f"secret:{secret_id}",
        ):
            raise CloudError(
                f"{where} spec.template.spec.containers[0].env[{i}].value_from.secret_key_ref"
                f".name: Permission denied on secret: projects/{number}/secrets/{secret_id}/"
                f"versions/{ref.get('version') or 'latest'} for Revision service account "
                f"{account}. The service account used must be granted the 'Secret Manager "
                "Secret Accessor' role (roles/secretmanager.secretAccessor) at the secret, "
                "project or higher level."
            )
        value = _secret_value(doc, ref)
        if value is None:
            raise CloudError(
                f"{where} Secret projects/{number}/secrets/{secret_id} has no enabled version."
            )
        env[item["name"]] = value
    return env


def cloudsql_mounts(
    doc: dict, template: dict, container: dict, account: str, twin_root
) -> tuple[dict[str, str], list[str]]:
    """host dir -> container dir for each Cloud SQL volume, and warnings for the logs. Without
    roles/cloudsql.client the connector is refused (https://cloud.google.com/sql/docs/postgres/
    connect-run#configure), so the socket never appears in the container."""
    mounts: dict[str, str] = dict(doc["endpoints"].get("container_mounts", {}))
    notes: list[str] = []
    allowed = st.holds(doc, f"serviceAccount:{account}", "roles/cloudsql.client")
    by_name = {v["name"]: v for v in template.get("volumes") or []}
    for vm in container.get("volume_mounts") or []:
        volume = by_name.get(vm["name"], {})
        instances = _one(volume.get("cloud_sql_instance")).get("instances") or []
        for conn in instances:
            if allowed:
                mounts[str(twin_root / "cloudsql" / conn)] = f"{vm['mount_path']}/{conn}"
            else:
                notes.append(
                    f"Cloud SQL connection failed: ensure that the account {account} has access "
                    f'to "{conn}". Error during generateEphemeral for {conn}: googleapi: Error '
                    "403: The client is not authorized to make this request., notAuthorized"
                )
    return mounts, notes


def _account(doc: dict, template: dict) -> str:
    return (
        template.get("service_account")
        or f"{doc['project']['number']}-compute@developer.gserviceaccount.com"
    )


def _require_image(doc: dict, image: str, where: str) -> None:
    if image not in doc["images"] or not podman.image_exists(image):
        raise CloudError(f"{where} Image '{image}' not found.")


def platform_env(doc: dict, port: int, account: str, **names: str) -> dict[str, str]:
    """What the platform adds: PORT and K_* (container contract), and the twin's stand-ins for
    Google's endpoints (the metadata server of the revision's account, GCS, IAP's keys)."""
    env = {"PORT": str(port), **{k: v for k, v in names.items() if v}}
    for key, value in doc["endpoints"].get("container_env", {}).items():
        env[key] = value.replace("{account}", account)
    return env


# ----- services --------------------------------------------------------------------------------


def _host(url: str) -> str:
    return url.removeprefix("https://").rstrip("/")


@register("google_cloud_run_v2_service")
class Service(Behaviour):
    force_new = ("project", "name", "location")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = f"projects/{s['project']}/locations/{s['location']}/services/{s['name']}"
        tag = hashlib.sha256(s["id"].encode()).hexdigest()[:10]
        short = {"us-central1": "uc", "europe-west1": "ew"}.get(s["location"], "xx")
        # The hash URL and the deterministic one (https://cloud.google.com/run/docs/triggering/https-request#deterministic).
        s["uri"] = f"https://{s['name']}-{tag}-{short}.a.run.app"
        s["urls"] = [f"https://{s['name']}-{ctx.number}.{s['location']}.run.app", s["uri"]]
        s["uid"] = s.get("uid") or hashlib.sha256(s["id"].encode()).hexdigest()[:32]

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        self._deploy(ctx, s)

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        if prior.get("template") != s.get("template") or not self._serving(ctx, s):
            self._deploy(ctx, s, previous=prior)
        else:
            for k in ("latest_ready_revision", "latest_created_revision"):
                s[k] = prior.get(k)

    def _serving(self, ctx: Context, s: dict) -> bool:
        return any(r.get("service") == s["id"] for r in ctx.doc()["routes"].values())

    def _deploy(self, ctx: Context, s: dict, previous: dict | None = None) -> None:
        doc = ctx.doc()
        template = _one(s.get("template"))
        container = _one(template.get("containers"))
        account = _account(doc, template)
        with ctx.twin.transaction() as d:
            count = d.setdefault("revision_counts", {}).get(s["id"], 0) + 1
            d["revision_counts"][s["id"]] = count
        revision = (
            f"{s['name']}-{count:05d}-{hashlib.sha256(str(time.time()).encode()).hexdigest()[:3]}"
        )
        where = (
            f"Error waiting to create Service: Revision '{revision}' is not ready and cannot "
            "serve traffic."
        )
        if not st.service_account_exists(doc, account):
            raise CloudError(f"{where} Service account {account} does not exist.")
        _require_image(doc, container["image"], where)
        env = container_env(doc, container, account, where)
        mounts, notes = cloudsql_mounts(doc, template, container, account, ctx.twin.root)
        port = _free_port()
        env.update(
            platform_env(
                doc,
                port,
                account,
                K_SERVICE=s["name"],
                K_REVISION=revision,
                K_CONFIGURATION=s["name"],
            )
        )
        handle = podman.run_container(
            container["image"],
            name=f"{ctx.twin.root.name}-{revision}",
            env=env,
            args=container.get("args") or None,
            port=port,
            volumes=mounts,
            command=container.get("command") or None,
        )
        probe = _one(container.get("startup_probe"))
        path = _one(probe.get("http_get")).get("path") or "/"
        budget = DEFAULT_PROBE_BUDGET
        if probe:
            budget = int(probe.get("initial_delay_seconds") or 0) + int(
                probe.get("period_seconds") or 10
            ) * int(probe.get("failure_threshold") or 3)
        try:
            handle.wait_healthy(path=path, timeout=budget)
        except podman.ContainerFailed as e:
            logs = e.log_tail
            handle.remove()
            raise CloudError(
                f"{where} The user-provided container failed to start and listen on the port "
                f"defined provided by the PORT={port} environment variable within the "
                "allocated timeout. This can happen when the container port is misconfigured "
                "or if the timeout is too short. The health check timeout can be extended.",
                "Last log lines of the revision:\n" + "\n".join([*notes, *logs.splitlines()[-20:]]),
            ) from None
        base = f"{s['id']}/revisions/"
        s["latest_ready_revision"] = s["latest_created_revision"] = base + revision
        self._route(ctx, s, port, handle.name, account)
        with ctx.twin.transaction() as d:
            d["revisions"].append(
                {
                    "service": s["id"],
                    "revision": revision,
                    "image": container["image"],
                    "ready_at": time.time(),
                }
            )

    def _route(self, ctx: Context, s: dict, port: int, container: str, account: str) -> None:
        old: list[str] = []
        with ctx.twin.transaction() as doc:
            for host in [_host(u) for u in s["urls"]]:
                if host in doc["routes"]:
                    old.append(doc["routes"][host]["container"])
                doc["routes"][host] = {
                    "service": s["id"],
                    "name": s["name"],
                    "port": port,
                    "container": container,
                    "service_account": account,
                    "url": s["urls"][0],
                }
        for name in set(old) - {container}:
            podman.Container(name, "", None).remove()

    def deleting(self, ctx: Context, s: dict) -> None:
        if s.get("deletion_protection"):
            # The provider's own refusal (resource_cloud_run_v2_service.go, deletion_protection).
            raise CloudError(
                "cannot destroy service without setting deletion_protection=false and running "
                "`terraform apply`"
            )
        containers: set[str] = set()
        with ctx.twin.transaction() as doc:
            for host, route in list(doc["routes"].items()):
                if route["service"] == s["id"]:
                    containers.add(route["container"])
                    del doc["routes"][host]
        for name in containers:
            podman.Container(name, "", None).remove()


# ----- jobs --------------------------------------------------------------------------------------


def execute(ctx: Context, job: dict, execution: str, timeout: float = 600) -> None:
    """Run a job's task to completion, as `gcloud run jobs execute --wait` and the provider's
    run_execution_token do; a non-zero exit fails the execution with the task's logs."""
    doc = ctx.doc()
    template = _one(_one(job.get("template")).get("template"))
    container = _one(template.get("containers"))
    account = _account(doc, template)
    where = f"Execution {execution} failed:"
    _require_image(doc, container["image"], where)
    env = container_env(doc, container, account, where)
    mounts, notes = cloudsql_mounts(doc, template, container, account, ctx.twin.root)
    env.update(
        platform_env(doc, 8080, account, CLOUD_RUN_JOB=job["name"], CLOUD_RUN_EXECUTION=execution)
    )
    code, logs = podman.run_to_completion(
        container["image"],
        args=container.get("args") or [],
        env=env,
        volumes=mounts,
        timeout=timeout,
        name=f"{ctx.twin.root.name}-{execution}",
        command=container.get("command") or None,
    )
    with ctx.twin.transaction() as d:
        d["executions"].append(
            {"job": job["id"], "name": execution, "exit_code": code, "at": time.time()}
        )
    if code != 0:
        raise CloudError(
            f"{where} Task {execution}-task0 failed with message: The container exited with an "
            f"error (exit code {code}).",
            "Last log lines of the task:\n" + "\n".join([*notes, *logs.splitlines()[-20:]]),
        )


@register("google_cloud_run_v2_job")
class Job(Behaviour):
    force_new = ("project", "name", "location")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = f"projects/{s['project']}/locations/{s['location']}/jobs/{s['name']}"
        s["uid"] = s.get("uid") or hashlib.sha256(s["id"].encode()).hexdigest()[:32]

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        self._maybe_run(ctx, None, s)

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        self._maybe_run(ctx, prior, s)

    def _maybe_run(self, ctx: Context, prior: dict | None, s: dict) -> None:
        # run_execution_token: "A unique string used as a suffix creating a new execution upon
        # job create or update. The Job will become ready when the execution is successfully
        # completed." (google provider docs, google_cloud_run_v2_job)
        token = s.get("run_execution_token") or s.get("start_execution_token")
        before = (prior or {}).get("run_execution_token") or (prior or {}).get(
            "start_execution_token"
        )
        if token and token != before:
            if s.get("run_execution_token"):
                execute(ctx, s, f"{s['name']}-{token}")
            s["execution_count"] = int((prior or {}).get("execution_count") or 0) + 1

    def deleting(self, ctx: Context, s: dict) -> None:
        if s.get("deletion_protection"):
            raise CloudError(
                "cannot destroy job without setting deletion_protection=false and running "
                "`terraform apply`"
            )
