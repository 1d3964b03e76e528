"""`deployer cost`: what these settings cost a month, idle and at a stated usage.

From the dated price table in prices.toml. Estimates, not a bill: the line items show what each
choice (tier, VPC connector or Direct egress, warm instances) adds, so the owner can trade.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECONDS_PER_MONTH = 730 * 3600
PRICES = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Usage:
    requests_per_month: int = 0
    seconds_per_request: float = 0.1
    artifacts_gb: float = 0.0
    database_gb: float = 10.0


@dataclass(frozen=True)
class Estimate:
    items: list[tuple[str, float]]

    @property
    def total(self) -> float:
        return sum(v for _, v in self.items)


def prices() -> dict[str, Any]:
    with PRICES.open("rb") as f:
        return tomllib.load(f)


def _memory_gib(memory: str) -> float:
    m = re.match(r"^(\d+)(Mi|Gi)$", memory)
    if not m:
        return 1.0
    return int(m.group(1)) / (1024 if m.group(2) == "Mi" else 1)


def database_month(tier: str, p: dict[str, Any]) -> float:
    sql = p["cloud_sql"]
    if tier in sql:
        return sql[tier]
    m = re.match(r"^db-(?:custom|perf-optimized-N)-(\d+)(?:-(\d+))?$", tier)
    cpus = int(m.group(1)) if m else 1
    gib = int(m.group(2)) / 1024 if m and m.group(2) else cpus * 4
    return 730 * (cpus * sql["custom_vcpu_hour"] + gib * sql["custom_gib_hour"])


def estimate(values: dict[str, Any], usage: Usage) -> Estimate:
    p = prices()
    run = p["cloud_run"]
    cpu = float(values["cpu"])
    gib = _memory_gib(values["memory"])
    items: list[tuple[str, float]] = []

    busy = usage.requests_per_month * usage.seconds_per_request
    # Concurrent requests share an instance; count busy instance-seconds, not request-seconds.
    busy_instance_seconds = busy / max(1, values["server_workers"] * values["server_threads"] / 2)
    vcpu_s = max(0.0, busy_instance_seconds * cpu - run["free_vcpu_seconds"])
    gib_s = max(0.0, busy_instance_seconds * gib - run["free_gib_seconds"])
    reqs = max(0, usage.requests_per_month - run["free_requests"])
    items.append(
        (
            "Cloud Run, serving requests",
            vcpu_s * run["vcpu_second"]
            + gib_s * run["gib_second"]
            + reqs / 1e6 * run["request_per_million"],
        )
    )
    warm = values["min_instances"]
    items.append(
        (
            f"Cloud Run, {warm} warm instance(s) between requests",
            warm
            * SECONDS_PER_MONTH
            * (cpu * run["idle_vcpu_second"] + gib * run["idle_gib_second"]),
        )
    )
    sql = p["cloud_sql"]
    items.append((f"Cloud SQL {values['db_tier']}", database_month(values["db_tier"], p)))
    items.append(
        (
            f"Cloud SQL storage ({usage.database_gb:.0f} GB SSD + backups)",
            usage.database_gb * (sql["ssd_gb_month"] + sql["backup_gb_month"]),
        )
    )
    if values["vpc_egress"] == "connector":
        items.append(
            (
                "Serverless VPC connector (2 x e2-micro, always on)",
                2 * p["network"]["connector_instance_month"],
            )
        )
    else:
        items.append(("Direct VPC egress (no standing instances)", 0.0))
    items.append(
        (
            f"Artifact bucket ({usage.artifacts_gb:.0f} GB)",
            usage.artifacts_gb * p["storage"]["standard_gb_month"],
        )
    )
    items.append(
        ("Artifact Registry (one ~0.5 GB image)", 0.5 * p["storage"]["artifact_registry_gb_month"])
    )
    items.append(
        ("Secret Manager (database password)", p["secret_manager"]["active_version_month"])
    )
    return Estimate(items)


def app_engine_flexible_estimate(usage: Usage) -> Estimate:
    """The older one-click design: App Engine flexible always on + Cloud SQL MySQL."""
    p = prices()
    ae = p["app_engine_flexible"]
    sql = p["cloud_sql"]
    return Estimate(
        [
            (
                "App Engine flexible, 1 instance (1 vCPU, 1 GiB) always on",
                730 * (ae["vcpu_hour"] + ae["gib_hour"]),
            ),
            ("Cloud SQL MySQL db-f1-micro", sql["db-f1-micro"]),
            (
                f"Cloud SQL storage ({usage.database_gb:.0f} GB)",
                usage.database_gb * (sql["ssd_gb_month"] + sql["backup_gb_month"]),
            ),
            (
                f"Artifact bucket ({usage.artifacts_gb:.0f} GB)",
                usage.artifacts_gb * p["storage"]["standard_gb_month"],
            ),
        ]
    )


def report(values: dict[str, Any], usage: Usage) -> list[str]:
    p = prices()
    idle = estimate(
        values, Usage(0, usage.seconds_per_request, usage.artifacts_gb, usage.database_gb)
    )
    busy = estimate(values, usage)
    lines = [f"Estimated monthly cost (USD, {p['region']} list prices checked {p['checked']}):", ""]
    width = max(len(name) for name, _ in busy.items)
    lines.append(f"  {'item'.ljust(width)}  {'idle':>9}  {'in use':>9}")
    for (name, a), (_, b) in zip(idle.items, busy.items, strict=True):
        lines.append(f"  {name.ljust(width)}  {a:9.2f}  {b:9.2f}")
    lines.append(f"  {'total'.ljust(width)}  {idle.total:9.2f}  {busy.total:9.2f}")
    lines += [
        "",
        f"'in use' = {usage.requests_per_month:,} requests a month of "
        f"{usage.seconds_per_request:.2f} s each.",
        'Choices: vpc_egress = "direct" saves the connector; db_tier sets the floor; '
        "each warm instance (min_instances) bills around the clock.",
    ]
    return lines
