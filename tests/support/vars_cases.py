"""One table of good and bad settings, run through both the deployer's validator and
terraform/variables.tf's validation blocks: the two must accept and refuse the same values.

Each case: the settings it changes (on top of a valid base), and the variable Terraform and the
deployer must blame (None: both accept). Both read Google's limits (regions, cpu/memory pairs,
connection caps) from deployer/limits.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    changes: dict[str, Any]
    blamed: str | None

    @property
    def name(self) -> str:
        shown = "_".join(f"{k}_{v}" for k, v in self.changes.items())
        verdict = "ok" if self.blamed is None else "bad"
        return "".join(c if c.isalnum() else "_" for c in f"{verdict}_{shown}")[:60]


def ok(**changes: Any) -> Case:
    return Case(changes, None)


def bad(blamed: str, **changes: Any) -> Case:
    return Case(changes, blamed)


CASES: tuple[Case, ...] = (
    ok(project_id="acme-ml-1234"),
    bad("project_id", project_id="Acme_ML"),
    bad("project_id", project_id="acme"),
    bad("project_id", project_id="acme-ml\n"),
    ok(region="us-central1"),
    ok(region="asia-southeast2"),
    bad("region", region="moon"),
    bad("region", region="europe-west1\n"),
    bad("region", region="europe-wst1"),
    bad("region", region="us-central2"),
    ok(service_name="mlflow-team"),
    bad("service_name", service_name="MLflow"),
    bad("service_name", service_name="a-name-far-too-long-for-it"),
    ok(web_app_users=["group:ml@example.com", "serviceAccount:ci@p-1234.iam.gserviceaccount.com"]),
    bad("web_app_users", web_app_users=[]),
    bad("web_app_users", web_app_users=["alice@example.com"]),
    bad("web_app_users", web_app_users=["user:alice@example.com\n"]),
    ok(vpc_egress="direct"),
    bad("vpc_egress", vpc_egress="vpn"),
    bad("connector_cidr", connector_cidr="10.8.1.0/27"),
    ok(subnetwork_cidr="10.9.0.0/24"),
    bad("subnetwork_cidr", subnetwork_cidr="10.9.0.0/28"),
    ok(db_engine="mysql"),
    bad("db_engine", db_engine="oracle"),
    ok(db_tier="db-custom-2-7680"),
    ok(db_tier="db-perf-optimized-N-2"),
    bad("db_tier", db_tier="db-huge"),
    bad("db_tier", db_tier="db-f1-micro\n"),
    bad("db_reserved_connections", db_reserved_connections=2),
    ok(min_instances=1),
    bad("min_instances", min_instances=-1),
    bad("max_instances", max_instances=0),
    # Connection caps: 25 on db-f1-micro, 50 on db-g1-small, 100 above (limits.json).
    bad("max_instances", max_instances=2),
    ok(max_instances=2, db_tier="db-g1-small"),
    bad("max_instances", max_instances=4, db_tier="db-g1-small"),
    ok(max_instances=7, db_tier="db-custom-1-3840"),
    bad("max_instances", max_instances=8, db_tier="db-custom-1-3840"),
    bad("server_workers", server_workers=9),
    bad("server_threads", server_threads=0),
    ok(cpu="2", memory="4Gi"),
    bad("cpu", cpu="3"),
    bad("memory", memory="1GB"),
    bad("memory", memory="1Gi\n"),
    # Cloud Run's vCPU/memory table (limits.json).
    ok(cpu="4", memory="2Gi"),
    bad("memory", cpu="4", memory="1Gi"),
    bad("memory", cpu="1", memory="8Gi"),
    bad("memory", cpu="1", memory="256Mi"),
    # Admins become the server's comma-separated ADMIN_EMAILS: people and service accounts only.
    ok(web_app_admins=["user:ana@example.com", "serviceAccount:ci@p-1234.iam.gserviceaccount.com"]),
    bad("web_app_admins", web_app_admins=["group:ml@example.com"]),
    bad("web_app_admins", web_app_admins=["user:a,b@example.com"]),
    ok(iap_programmatic_clients=["1234-abcd.apps.googleusercontent.com"]),
    bad("iap_programmatic_clients", iap_programmatic_clients=["abcd.apps.googleusercontent.com"]),
    # The sleeping database: 0 (never) or at least a quarter of an hour, at most a week.
    ok(db_sleep_after_minutes=0),
    ok(db_sleep_after_minutes=15),
    bad("db_sleep_after_minutes", db_sleep_after_minutes=5),
    bad("db_sleep_after_minutes", db_sleep_after_minutes=20000),
    ok(custom_domain="mlflow.example.com"),
    bad("custom_domain", custom_domain="not a domain"),
    ok(labels={"team": "ml"}),
    bad("labels", labels={"Team": "ml"}),
    ok(
        github_repository="acme/ml-models",
        github_repository_id="123456789",
        github_repository_owner_id="987654",
    ),
    bad(
        "github_repository",
        github_repository="acme",
        github_repository_id="123456789",
        github_repository_owner_id="987654",
    ),
    # Federation binds to the numeric ids (terraform/variables.tf pairs them with the name).
    bad("github_repository_id", github_repository="acme/ml-models"),
    bad("github_repository_id", github_repository_id="123456789", github_repository_owner_id="9"),
    bad(
        "github_repository_id",
        github_repository="acme/ml-models",
        github_repository_id="12ab",
        github_repository_owner_id="987654",
    ),
    bad(
        "github_repository_owner_id",
        github_repository="acme/ml-models",
        github_repository_id="123456789",
    ),
    ok(network_name="shared-vpc", subnetwork_name="shared-subnet", vpc_egress="direct"),
    bad("subnetwork_name", network_name="shared-vpc", vpc_egress="direct"),
)
