"""What each Terraform resource does in the twin project, written as Google documents it.

A behaviour fills the attributes Google computes (ids, emails, URLs, connection names), makes
the change real where this stack depends on it (a PostgreSQL per Cloud SQL instance, buckets in
the GCS emulator, the image run by podman for each Cloud Run revision) and refuses what Google
refuses, with Google's own wording where we know it. Types with no behaviour of their own are
accepted and stored, after the API check every resource gets.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.twin import state as st
from tests.twin.state import TwinState


class CloudError(Exception):
    """Google said no: becomes one Terraform error diagnostic."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail

    def diagnostic(self) -> dict[str, str]:
        return {"severity": "error", "summary": self.summary, "detail": self.detail}


def _unknown(value: Any) -> bool:
    return isinstance(value, dict) and "$unknown" in value


@dataclass
class Context:
    """The provider's configuration and the twin's state, as one resource call sees them."""

    twin: TwinState
    project_id: str = ""
    region: str = ""
    default_labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Context:
        twin = TwinState.from_env()
        proj = twin.read()["project"]
        return cls(twin, proj["id"], proj["region"])

    def configure(self, config: dict[str, Any]) -> None:
        self.project_id = config.get("project") or self.project_id
        self.region = config.get("region") or self.region
        self.default_labels = config.get("default_labels") or {}

    @property
    def number(self) -> str:
        return self.twin.read()["project"]["number"]

    def doc(self) -> dict[str, Any]:
        return self.twin.read()

    def remember(self, kind: str, state: dict[str, Any]) -> None:
        with self.twin.transaction() as doc:
            doc["resources"].setdefault(kind, {})[state["id"]] = state

    def forget(self, kind: str, state: dict[str, Any]) -> None:
        with self.twin.transaction() as doc:
            doc["resources"].get(kind, {}).pop(state.get("id"), None)

    def lookup(self, kind: str, ident: str | None) -> dict[str, Any] | None:
        return st.resources(self.doc(), kind).get(ident or "")

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for r in st.resources(self.doc(), kind).values():
            if name in (r.get("name"), r.get("id")) or str(r.get("id", "")).endswith("/" + name):
                return r
        return None


# ----- the checks every resource gets --------------------------------------------------------

API_TITLES = {
    "run.googleapis.com": "Cloud Run Admin API",
    "sqladmin.googleapis.com": "Cloud SQL Admin API",
    "compute.googleapis.com": "Compute Engine API",
    "servicenetworking.googleapis.com": "Service Networking API",
    "vpcaccess.googleapis.com": "Serverless VPC Access API",
    "secretmanager.googleapis.com": "Secret Manager API",
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "iap.googleapis.com": "Cloud Identity-Aware Proxy API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "cloudscheduler.googleapis.com": "Cloud Scheduler API",
    "storage.googleapis.com": "Cloud Storage API",
}

# Which API serves a resource type, by prefix (longest first).
API_OF = (
    ("google_cloud_run_v2_", "run.googleapis.com"),
    ("google_sql_", "sqladmin.googleapis.com"),
    ("google_compute_", "compute.googleapis.com"),
    ("google_service_networking_", "servicenetworking.googleapis.com"),
    ("google_vpc_access_", "vpcaccess.googleapis.com"),
    ("google_secret_manager_", "secretmanager.googleapis.com"),
    ("google_artifact_registry_", "artifactregistry.googleapis.com"),
    ("google_iap_", "iap.googleapis.com"),
    ("google_iam_workload_identity_", "iam.googleapis.com"),
    ("google_service_account", "iam.googleapis.com"),
    ("google_project_iam_", "cloudresourcemanager.googleapis.com"),
    ("google_cloud_scheduler_", "cloudscheduler.googleapis.com"),
    ("google_storage_", "storage.googleapis.com"),
)


def require_api(ctx: Context, kind: str) -> None:
    """A call to a disabled API fails with 403 SERVICE_DISABLED, worded as Google words it
    (https://cloud.google.com/service-usage/docs/troubleshooting, "API has not been used")."""
    service = next((api for prefix, api in API_OF if kind.startswith(prefix)), None)
    if service is None or st.api_enabled(ctx.doc(), service):
        return
    number = ctx.number
    title = API_TITLES.get(service, service)
    raise CloudError(
        f"Error creating {kind}: googleapi: Error 403: {title} has not been used in project "
        f"{number} before or it is disabled. Enable it by visiting "
        f"https://console.developers.google.com/apis/api/{service}/overview?project={number} "
        "then retry. If you enabled this API recently, wait a few minutes for the action to "
        "propagate to our systems and retry.",
        f"reason: SERVICE_DISABLED, service: {service}",
    )


def require_member(ctx: Context, member: str) -> None:
    """Binding a service account that does not exist is refused (400), including a Google
    service agent that has not been created yet
    (https://cloud.google.com/iam/docs/service-agents#create-service-agents)."""
    kind, _, email = member.partition(":")
    if kind != "serviceAccount":
        return
    if st.service_account_exists(ctx.doc(), email):
        return
    if not email.endswith(".gserviceaccount.com") or email.endswith(
        "@cloudbuild.gserviceaccount.com"
    ):
        return
    raise CloudError(
        f"Error applying IAM policy: googleapi: Error 400: Service account {email} does not "
        "exist., badRequest"
    )


# ----- behaviours ------------------------------------------------------------------------------


class Behaviour:
    """Accept, fill the usual computed attributes, store. Subclasses add what matters."""

    force_new: tuple[str, ...] = ("project", "name", "location", "region")
    id_format: str = ""

    def plan(self, ctx: Context, prior: dict | None, planned: dict) -> None:
        for attr in ("project",):
            if attr in planned and (planned[attr] is None or _unknown(planned[attr])) and not prior:
                planned[attr] = ctx.project_id
        if "effective_labels" in planned and not _unknown(planned.get("labels")):
            merged = {**ctx.default_labels, **(planned.get("labels") or {})}
            planned["effective_labels"] = merged
            if "terraform_labels" in planned:
                planned["terraform_labels"] = merged

    def fill(self, ctx: Context, s: dict) -> None:
        if "project" in s and not s.get("project"):
            s["project"] = ctx.project_id
        for attr in ("region", "location"):
            if attr in s and not s.get(attr):
                s[attr] = ctx.region
        if self.id_format:
            s["id"] = self.id_format.format(**{k: v for k, v in s.items() if isinstance(v, str)})
        elif not s.get("id"):
            s["id"] = str(s.get("name") or secrets.token_hex(6))

    def create(self, ctx: Context, s: dict, config: dict) -> None:
        kind = self.kind
        require_api(ctx, kind)
        if "member" in s and isinstance(s["member"], str):
            require_member(ctx, s["member"])
        self.fill(ctx, s)
        self.created(ctx, s, config)

    def update(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        require_api(ctx, self.kind)
        for k, v in prior.items():
            if _unknown(s.get(k)):
                s[k] = v
        self.fill(ctx, s)
        self.updated(ctx, prior, s, config)

    def delete(self, ctx: Context, s: dict) -> None:
        self.deleting(ctx, s)

    def refresh(self, ctx: Context, s: dict) -> dict:
        return s

    # hooks
    kind = ""

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        pass

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        self.created(ctx, s, config)

    def deleting(self, ctx: Context, s: dict) -> None:
        pass


REGISTRY: dict[str, Behaviour] = {}


def register(kind: str) -> Callable[[type[Behaviour]], type[Behaviour]]:
    def wrap(cls: type[Behaviour]) -> type[Behaviour]:
        obj = cls()
        obj.kind = kind
        REGISTRY[kind] = obj
        return cls

    return wrap


def behaviour(kind: str) -> Behaviour:
    if kind not in REGISTRY:
        obj = Behaviour()
        obj.kind = kind
        REGISTRY[kind] = obj
    return REGISTRY[kind]


def _digits(seed: str, n: int = 21) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16))[:n]


# ----- project and IAM -------------------------------------------------------------------------


@register("google_project_service")
class ProjectService(Behaviour):
    force_new = ("project", "service")
    id_format = "{project}/{service}"

    def deleting(self, ctx: Context, s: dict) -> None:
        # disable_on_destroy = false leaves the API on (provider docs for google_project_service).
        if s.get("disable_on_destroy"):
            with ctx.twin.transaction() as doc:
                doc["services"] = [x for x in doc["services"] if x != s["service"]]


@register("google_service_account")
class ServiceAccount(Behaviour):
    force_new = ("project", "account_id")
    # The provider's own check of account_id (resource_google_service_account.go).
    ACCOUNT_ID = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")

    def plan(self, ctx: Context, prior: dict | None, planned: dict) -> None:
        super().plan(ctx, prior, planned)
        account = planned.get("account_id")
        if isinstance(account, str) and not self.ACCOUNT_ID.match(account):
            raise CloudError(
                f'"account_id" ("{account}") doesn\'t match regexp '
                '"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$"'
            )

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        email = f"{s['account_id']}@{s['project']}.iam.gserviceaccount.com"
        s.update(
            email=email,
            name=f"projects/{s['project']}/serviceAccounts/{email}",
            id=f"projects/{s['project']}/serviceAccounts/{email}",
            unique_id=_digits(email),
            member=f"serviceAccount:{email}",
        )

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        if ctx.lookup(self.kind, s["id"]) is not None:
            raise CloudError(
                f"Error creating service account: googleapi: Error 409: Service account "
                f"{s['account_id']} already exists within project projects/{s['project']}., "
                "alreadyExists"
            )


class IamMember(Behaviour):
    force_new = ("role", "member", "project", "bucket", "secret_id", "service_account_id", "name")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        target = next(
            str(s[k])
            for k in (
                "service_account_id",
                "secret_id",
                "bucket",
                "name",
                "cloud_run_service_name",
                "project",
            )
            if s.get(k)
        )
        s["id"] = f"{target}/{s['role']}/{s['member']}"
        s["etag"] = "BwY" + _digits(s["id"], 8)


for _kind in (
    "google_project_iam_member",
    "google_cloud_run_v2_job_iam_member",
    "google_service_account_iam_member",
    "google_secret_manager_secret_iam_member",
    "google_storage_bucket_iam_member",
    "google_cloud_run_v2_service_iam_member",
    "google_iap_web_cloud_run_service_iam_member",
):
    register(_kind)(type(f"Iam_{_kind}", (IamMember,), {}))


@register("google_project_iam_custom_role")
class CustomRole(Behaviour):
    force_new = ("project", "role_id")
    id_format = "projects/{project}/roles/{role_id}"

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["name"] = s["id"]
        s["deleted"] = False

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        # A deleted custom role keeps its id for 37 days and cannot be created again
        # (https://cloud.google.com/iam/docs/creating-custom-roles#deleting-custom-role).
        if s["id"] in ctx.doc()["deleted"].get(self.kind, []):
            raise CloudError(
                f"Error creating the custom project role {s['id']}: googleapi: Error 400: You "
                f"can't create a role with role_id ({s['role_id']}) where there is an existing "
                "role with that role_id in a deleted state., badRequest"
            )

    def deleting(self, ctx: Context, s: dict) -> None:
        with ctx.twin.transaction() as doc:
            doc["deleted"].setdefault(self.kind, []).append(s["id"])


@register("google_cloud_scheduler_job")
class SchedulerJob(Behaviour):
    id_format = "projects/{project}/locations/{region}/jobs/{name}"


@register("google_iam_workload_identity_pool")
class WorkloadIdentityPool(Behaviour):
    force_new = ("project", "workload_identity_pool_id")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["name"] = (
            f"projects/{ctx.number}/locations/global/workloadIdentityPools/"
            f"{s['workload_identity_pool_id']}"
        )
        s["id"] = (
            f"projects/{s['project']}/locations/global/workloadIdentityPools/{s['workload_identity_pool_id']}"
        )
        s["state"] = "ACTIVE"

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        # Deleted pools stay soft-deleted for 30 days and their ids cannot be reused
        # (https://cloud.google.com/iam/docs/manage-workload-identity-pools-providers#delete-pool).
        if s["id"] in ctx.doc()["deleted"].get(self.kind, []):
            raise CloudError(
                "Error creating WorkloadIdentityPool: googleapi: Error 409: Requested entity "
                "already exists",
                f"{s['workload_identity_pool_id']} was deleted less than 30 days ago",
            )

    def deleting(self, ctx: Context, s: dict) -> None:
        with ctx.twin.transaction() as doc:
            doc["deleted"].setdefault(self.kind, []).append(s["id"])


@register("google_iam_workload_identity_pool_provider")
class WorkloadIdentityProvider(WorkloadIdentityPool):
    force_new = ("project", "workload_identity_pool_id", "workload_identity_pool_provider_id")

    def fill(self, ctx: Context, s: dict) -> None:
        Behaviour.fill(self, ctx, s)
        pool = f"locations/global/workloadIdentityPools/{s['workload_identity_pool_id']}"
        provider = s["workload_identity_pool_provider_id"]
        s["name"] = f"projects/{ctx.number}/{pool}/providers/{provider}"
        s["id"] = f"projects/{s['project']}/{pool}/providers/{provider}"
        s["state"] = "ACTIVE"


# ----- network ---------------------------------------------------------------------------------


@register("google_compute_network")
class Network(Behaviour):
    id_format = "projects/{project}/global/networks/{name}"

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["self_link"] = f"https://www.googleapis.com/compute/v1/{s['id']}"
        s["network_id"] = s.get("network_id") or _digits(s["id"], 19)

    def deleting(self, ctx: Context, s: dict) -> None:
        # A network with a VPC peering cannot be deleted
        # (https://cloud.google.com/vpc/docs/using-vpc-peering#deleting-peering).
        peerings = ctx.doc().get("peerings", {}).get(s["name"]) or []
        if self.kind == "google_compute_network" and peerings:
            raise CloudError(
                f"Error waiting for Deleting Network: The network resource '{s['id']}' is "
                f"already being used by peering '{peerings[0]}'. Remove the peering first."
            )


@register("google_compute_subnetwork")
class Subnetwork(Behaviour):
    force_new = ("project", "name", "region", "network", "ip_cidr_range")
    id_format = "projects/{project}/regions/{region}/subnetworks/{name}"

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["self_link"] = f"https://www.googleapis.com/compute/v1/{s['id']}"


@register("google_compute_firewall")
class Firewall(Network):
    id_format = "projects/{project}/global/firewalls/{name}"


@register("google_compute_global_address")
class GlobalAddress(Behaviour):
    force_new = ("project", "name", "network", "prefix_length", "address")
    id_format = "projects/{project}/global/addresses/{name}"

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        if not s.get("address"):
            s["address"] = f"10.{16 + int(_digits(s['id'], 3)) % 200}.0.0"
        s["self_link"] = f"https://www.googleapis.com/compute/v1/{s['id']}"


@register("google_service_networking_connection")
class PrivateServicesConnection(Behaviour):
    force_new = ("network", "service")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = f"{s['network'].replace('/', '%2F')}:{s['service']}"
        s["peering"] = "servicenetworking-googleapis-com"

    def deleting(self, ctx: Context, s: dict) -> None:
        # ABANDON leaves the peering in the network; otherwise the connection goes with it.
        if s.get("deletion_policy") != "ABANDON":
            network = str(s["network"]).rsplit("/", 1)[-1]
            with ctx.twin.transaction() as doc:
                peerings = doc.setdefault("peerings", {}).get(network, [])
                if s["peering"] in peerings:
                    peerings.remove(s["peering"])

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        # One connection per network and service: a second CreateConnection with other
        # ranges is refused (https://cloud.google.com/vpc/docs/configure-private-services-access
        # #modify-connection, "use UpdateConnection").
        for other in st.resources(ctx.doc(), self.kind).values():
            if other["id"] == s["id"] and other.get("reserved_peering_ranges") != s.get(
                "reserved_peering_ranges"
            ):
                raise CloudError(
                    "Error waiting for Create Service Networking Connection: Error code 9, "
                    "message: Cannot modify allocated ranges in CreateConnection. Please use "
                    "UpdateConnection."
                )
        network = str(s["network"]).rsplit("/", 1)[-1]
        with ctx.twin.transaction() as doc:
            peerings = doc.setdefault("peerings", {}).setdefault(network, [])
            if s["peering"] not in peerings:
                peerings.append(s["peering"])


@register("google_vpc_access_connector")
class Connector(Behaviour):
    NAME = re.compile(r"^[a-z][-a-z0-9]{0,23}[a-z0-9]$")
    id_format = "projects/{project}/locations/{region}/connectors/{name}"

    def plan(self, ctx: Context, prior: dict | None, planned: dict) -> None:
        super().plan(ctx, prior, planned)
        name = planned.get("name")
        if isinstance(name, str) and not self.NAME.match(name):
            raise CloudError(
                f'Error: "name" ("{name}") doesn\'t match regexp "^[a-z][-a-z0-9]{{0,23}}[a-z0-9]$"'
            )

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["self_link"] = s["id"]
        s["state"] = "READY"


# ----- secrets, registry -----------------------------------------------------------------------


@register("google_secret_manager_secret")
class Secret(Behaviour):
    force_new = ("project", "secret_id")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = f"projects/{s['project']}/secrets/{s['secret_id']}"
        s["name"] = f"projects/{ctx.number}/secrets/{s['secret_id']}"

    def deleting(self, ctx: Context, s: dict) -> None:
        with ctx.twin.transaction() as doc:
            doc["secrets"].pop(s["secret_id"], None)


@register("google_secret_manager_secret_version")
class SecretVersion(Behaviour):
    force_new = ("secret", "secret_data", "secret_data_wo_version", "enabled")

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        secret_id = str(s["secret"]).rsplit("/", 1)[-1]
        # Write-only data is in the configuration only, never in the state.
        data = config.get("secret_data_wo") or s.get("secret_data")
        with ctx.twin.transaction() as doc:
            versions = doc["secrets"].setdefault(secret_id, [])
            versions.append(data)
            number = len(versions)
        s["version"] = str(number)
        s["name"] = f"projects/{ctx.number}/secrets/{secret_id}/versions/{number}"
        s["id"] = s["name"]

    def deleting(self, ctx: Context, s: dict) -> None:
        # Destroyed versions keep their number; the payload is gone.
        secret_id = str(s["secret"]).rsplit("/", 1)[-1]
        with ctx.twin.transaction() as doc:
            versions = doc["secrets"].get(secret_id)
            if versions and s.get("version"):
                versions[int(s["version"]) - 1] = None


@register("google_artifact_registry_repository")
class Repository(Behaviour):
    force_new = ("project", "location", "repository_id", "format")
    id_format = "projects/{project}/locations/{location}/repositories/{repository_id}"

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["name"] = s["repository_id"]
        s["registry_uri"] = f"{s['location']}-docker.pkg.dev/{s['project']}/{s['repository_id']}"


# ----- random ----------------------------------------------------------------------------------


@register("random_id")
class RandomId(Behaviour):
    force_new = ("byte_length", "keepers", "prefix")

    def fill(self, ctx: Context, s: dict) -> None:
        import base64

        raw = secrets.token_bytes(int(s["byte_length"]))
        prefix = s.get("prefix") or ""
        s["hex"] = prefix + raw.hex()
        s["b64_url"] = prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        s["b64_std"] = prefix + base64.b64encode(raw).decode()
        s["dec"] = prefix + str(int.from_bytes(raw, "big"))
        s["id"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def update(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        s.update({k: prior[k] for k in ("hex", "b64_url", "b64_std", "dec", "id")})


@register("random_password")
class RandomPassword(Behaviour):
    force_new = ("length", "special", "override_special", "upper", "lower", "numeric", "keepers")

    def fill(self, ctx: Context, s: dict) -> None:
        alphabet = string.ascii_letters + string.digits
        if s.get("special") is not False:
            alphabet += s.get("override_special") or "!@#$%&*()-_=+[]{}<>:?"
        s["result"] = "".join(secrets.choice(alphabet) for _ in range(int(s["length"])))
        s["bcrypt_hash"] = "$2a$10$" + secrets.token_hex(26)
        s["id"] = "none"

    def update(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        s.update({k: prior[k] for k in ("result", "bcrypt_hash", "id")})


@register("random_string")
class RandomString(RandomPassword):
    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = s["result"]


# ----- data sources ----------------------------------------------------------------------------


def _data_project(ctx: Context, s: dict) -> None:
    wanted = s.get("project_id") or ctx.project_id
    if wanted != ctx.project_id:
        raise CloudError(
            f"Error when reading or editing Project {wanted}: googleapi: Error 403: The caller "
            "does not have permission, forbidden"
        )
    s.update(
        project_id=wanted,
        number=ctx.number,
        name=wanted,
        id=f"projects/{wanted}",
        labels=s.get("labels") or {},
    )


def _data_network(ctx: Context, s: dict) -> None:
    found = ctx.find("google_compute_network", s["name"])
    if found is None:
        raise CloudError(
            f"network {s['name']!r} not found: googleapi: Error 404: The resource "
            f"'projects/{ctx.project_id}/global/networks/{s['name']}' was not found, notFound"
        )
    s.update({k: v for k, v in found.items() if k in s})


def _data_client_config(ctx: Context, s: dict) -> None:
    s.update(project=ctx.project_id, region=ctx.region, id=ctx.project_id, access_token="ya29.twin")


DATA_SOURCES: dict[str, Callable[[Context, dict], None]] = {
    "google_project": _data_project,
    "google_compute_network": _data_network,
    "google_client_config": _data_client_config,
}


def data_source(kind: str) -> Callable[[Context, dict], None]:
    if kind not in DATA_SOURCES:
        raise CloudError(f"the twin has no data source {kind}")
    return DATA_SOURCES[kind]


# Behaviours with real backends register themselves on import.
from tests.twin import cloudrun, cloudsql, storage  # noqa: E402,F401
