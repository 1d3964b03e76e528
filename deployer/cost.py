"""`deployer cost`: what these settings cost a month, by region: idle with the database awake,
idle with it asleep, and at a stated usage.

From the dated price table in prices.toml (one row per allowed region, with its sources).
Estimates, not a bill: the line items show what each choice (tier, VPC connector or Direct
egress, warm instances, a database that sleeps) adds, so the owner can trade. Monthly free tiers
are per billing account; they are applied, as a small team's only project would see them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECONDS_PER_MONTH = 730 * 3600
PRICES = Path(__file__).with_name("prices.toml")
DEFAULT_SLEEP_AFTER_MINUTES = 60  # terraform/variables.tf db_sleep_after_minutes
# The server image as the registry stores it: compressed layers. image/Dockerfile's image is
# 894 MB unpacked, 0.28 GB gzipped (measured 2026-11-25, `podman save | gzip -6`). Each further
# version the repository keeps (keep_versions) adds its changed layers.
IMAGE_GB = 0.28
SLEEPER_RUN_SECONDS = 5.0  # one look of the sleeper job: start, two API calls, exit


class CostError(ValueError):
    pass


@dataclass(frozen=True)
class Usage:
    requests_per_month: int = 0
    seconds_per_request: float = 0.1
    artifacts_gb: float = 0.0
    database_gb: float = 10.0  # the instance's disk (10 GB is Cloud SQL's smallest)
    backup_gb: float = 1.0  # what its backups hold: about the data, which MLflow keeps small


@dataclass(frozen=True)
class Estimate:
    items: list[tuple[str, float]]

    @property
    def total(self) -> float:
        return sum(v for _, v in self.items)


@dataclass(frozen=True)
class RegionPrices:
    """The price table as it applies in one region."""

    region: str
    table: dict[str, Any]
    run: dict[str, float]
    sql: float  # Cloud SQL's ratio to the base region
    compute: float  # Compute Engine's (the connector, App Engine flexible)
    storage_gb_month: float  # Cloud Storage Standard
    verified: bool  # read off Google's own pricing page
    priced: bool = True  # False: an allowed region with no row, estimated at base rates

    def __getitem__(self, section: str) -> Any:
        return self.table[section]


def prices() -> dict[str, Any]:
    with PRICES.open("rb") as f:
        return tomllib.load(f)


def allowed_regions() -> list[str]:
    """The regions `deployer` deploys to (deployer/limits.json)."""
    from deployer import limits

    return sorted(limits.regions())


def for_region(region: str | None) -> RegionPrices:
    """The table as it applies in `region`. A region the deployer allows but the table has no
    row for is priced at the base region's rates (`priced` False: the report says so); any
    other region is refused."""
    from deployer import limits

    table = prices()
    region = region or table["base_region"]
    row = table["regions"].get(region)
    priced = row is not None
    if row is None:
        if region not in limits.regions():
            known = ", ".join(sorted(table["regions"]))
            raise CostError(
                f"no prices for region {region!r} in deployer/prices.toml; add a row from "
                f"{table['sources']['cloud_sql']} (known: {known})"
            )
        row = {**table["regions"][table["base_region"]], "verified": False}
    run = table["cloud_run"][f"tier{row['tier']}"]
    return RegionPrices(
        region,
        table,
        run,
        sql=float(row["sql"]),
        compute=float(row["compute"]),
        storage_gb_month=float(row["storage"]),
        verified=bool(row["verified"]),
        priced=priced,
    )


def _memory_gib(memory: str) -> float:
    m = re.match(r"^(\d+)(Mi|Gi)$", memory)
    if not m:
        return 1.0
    return int(m.group(1)) / (1024 if m.group(2) == "Mi" else 1)


def database_month(tier: str, p: RegionPrices | dict[str, Any]) -> float:
    """The instance charge of a month awake. db-perf-optimized-N-* runs on ENTERPRISE_PLUS
    (terraform/modules/database) with 8 GiB per vCPU; db-custom-CPUS-MB on ENTERPRISE."""
    sql = p["cloud_sql"]
    factor = p.sql if isinstance(p, RegionPrices) else 1.0
    if tier in sql:
        return sql[tier] * factor
    perf = re.match(r"^db-perf-optimized-N-(\d+)$", tier)
    if perf:
        cpus = int(perf.group(1))
        hourly = (
            cpus * sql["enterprise_plus_vcpu_hour"] + cpus * 8 * sql["enterprise_plus_gib_hour"]
        )
        return 730 * hourly * factor
    m = re.match(r"^db-custom-(\d+)-(\d+)$", tier)
    cpus = int(m.group(1)) if m else 1
    gib = int(m.group(2)) / 1024 if m else cpus * 3.75
    return 730 * (cpus * sql["enterprise_vcpu_hour"] + gib * sql["enterprise_gib_hour"]) * factor


def _serving(values: dict[str, Any], usage: Usage, p: RegionPrices) -> float:
    """Cost of serving requests, beyond the request-based free tier."""
    run, free = p.run, p["cloud_run"]["free"]
    cpu, gib = float(values["cpu"]), _memory_gib(values["memory"])
    busy = usage.requests_per_month * usage.seconds_per_request
    # Concurrent requests share an instance; count busy instance-seconds, not request-seconds.
    busy_instance_seconds = busy / max(1, values["server_workers"] * values["server_threads"] / 2)
    vcpu_s, gib_s = busy_instance_seconds * cpu, busy_instance_seconds * gib
    reqs = max(0, usage.requests_per_month - free["requests"])
    return (
        max(0.0, vcpu_s - free["vcpu_seconds"]) * run["vcpu_second"]
        + max(0.0, gib_s - free["gib_seconds"]) * run["gib_second"]
        + reqs / 1e6 * run["request_per_million"]
    )


def _sleeper_month(minutes: int, p: RegionPrices) -> float:
    """Cloud Scheduler's job and the sleeper job's runs (1 vCPU, 512 MiB, a few seconds), inside
    the jobs' own free tier (https://cloud.google.com/run/pricing)."""
    every = 5 if minutes <= 60 else 15  # terraform/modules/sleep schedule
    runs = 730 * 60 / every
    vcpu_s, gib_s = runs * SLEEPER_RUN_SECONDS, runs * SLEEPER_RUN_SECONDS * 0.5
    sched, free = p["cloud_scheduler"], p["cloud_run"]["free_jobs"]
    free_vcpu, free_gib = free["vcpu_seconds"], free["gib_seconds"]
    return (
        max(0, 1 - sched["free_jobs"]) * sched["job_month"]
        + max(0.0, vcpu_s - free_vcpu) * p.run["job_vcpu_second"]
        + max(0.0, gib_s - free_gib) * p.run["job_gib_second"]
    )


def _database_storage(usage: Usage, p: RegionPrices) -> tuple[str, float]:
    """Disk and backups bill whether the instance runs or sleeps."""
    sql = p["cloud_sql"]
    name = f"Cloud SQL storage ({usage.database_gb:.0f} GB SSD, {usage.backup_gb:.0f} GB backups)"
    disk = usage.database_gb * sql["ssd_gb_month"] + usage.backup_gb * sql["backup_gb_month"]
    return name, disk * p.sql


def _storage_items(usage: Usage, p: RegionPrices) -> list[tuple[str, float]]:
    st = p["storage"]
    free = st["free_gb_month"] if p.region in st["free_regions"] else 0
    ar_gb = max(0.0, IMAGE_GB - st["artifact_registry_free_gb"])
    sm = p["secret_manager"]
    return [
        (
            f"Artifact bucket ({usage.artifacts_gb:.0f} GB)",
            max(0.0, usage.artifacts_gb - free) * p.storage_gb_month,
        ),
        (
            f"Artifact Registry (one ~{IMAGE_GB} GB image)",
            ar_gb * st["artifact_registry_gb_month"],
        ),
        (
            "Secret Manager (database password)",
            max(0, 1 - sm["free_active_versions"]) * sm["active_version_month"],
        ),
    ]


def estimate(values: dict[str, Any], usage: Usage, asleep: bool = False) -> Estimate:
    """One month of these settings; `asleep`: the database stopped all month (no requests)."""
    p = for_region(values.get("region"))
    cpu, gib = float(values["cpu"]), _memory_gib(values["memory"])
    serving = _serving(values, usage, p)
    warm = values["min_instances"]
    items = [
        ("Cloud Run, serving requests", serving),
        (
            f"Cloud Run, {warm} warm instance(s) between requests",
            warm
            * SECONDS_PER_MONTH
            * (cpu * p.run["idle_vcpu_second"] + gib * p.run["idle_gib_second"]),
        ),
    ]
    tier = values["db_tier"]
    items.append((f"Cloud SQL {tier}", 0.0 if asleep else database_month(tier, p)))
    items.append(_database_storage(usage, p))
    minutes = int(values.get("db_sleep_after_minutes", DEFAULT_SLEEP_AFTER_MINUTES))
    if minutes > 0:
        sleeper = _sleeper_month(minutes, p)
        items.append(("Database sleeper (Cloud Scheduler + job)", sleeper))
    if values["vpc_egress"] == "connector":
        connector = 2 * p["network"]["connector_instance_month"] * p.compute
        items.append(("Serverless VPC connector (2 x e2-micro, always on)", connector))
    else:
        items.append(("Direct VPC egress (no standing instances)", 0.0))
    return Estimate(items + _storage_items(usage, p))


def app_engine_flexible_estimate(usage: Usage, region: str | None = None) -> Estimate:
    """The older one-click design: App Engine flexible always on + Cloud SQL MySQL."""
    p = for_region(region)
    ae, sql = p["app_engine_flexible"], p["cloud_sql"]
    st = p["storage"]
    free = st["free_gb_month"] if p.region in st["free_regions"] else 0
    return Estimate(
        [
            (
                "App Engine flexible, 1 instance (1 vCPU, 1 GiB, 10 GB disk) always on",
                (730 * (ae["vcpu_hour"] + ae["gib_hour"]) + 10 * ae["pd_gb_month"]) * p.compute,
            ),
            ("Cloud SQL MySQL db-f1-micro", sql["db-f1-micro"] * p.sql),
            _database_storage(usage, p),
            (
                f"Artifact bucket ({usage.artifacts_gb:.0f} GB)",
                max(0.0, usage.artifacts_gb - free) * p.storage_gb_month,
            ),
        ]
    )


def _idle(usage: Usage) -> Usage:
    return Usage(
        0, usage.seconds_per_request, usage.artifacts_gb, usage.database_gb, usage.backup_gb
    )


def report(values: dict[str, Any], usage: Usage) -> list[str]:
    p = for_region(values.get("region"))
    minutes = int(values.get("db_sleep_after_minutes", DEFAULT_SLEEP_AFTER_MINUTES))
    columns = [("idle, awake", estimate(values, _idle(usage)))]
    if minutes > 0:
        columns.append(("idle, asleep", estimate(values, _idle(usage), asleep=True)))
    columns.append(("in use", estimate(values, usage)))
    if not p.priced:
        note = f"; no prices for {p.region} in the table: shown at {p['base_region']} rates"
    elif not p.verified:
        note = "; regional figures from Google's billing catalog, not its pricing page"
    else:
        note = ""
    lines = [
        f"Estimated monthly cost in {p.region} (USD, list prices checked {p['checked']}{note}):",
        "",
    ]
    width = max(len(name) for name, _ in columns[-1][1].items)
    lines.append(f"  {'item'.ljust(width)}" + "".join(f"  {t:>12}" for t, _ in columns))
    for i, (name, _) in enumerate(columns[-1][1].items):
        lines.append(
            f"  {name.ljust(width)}" + "".join(f"  {e.items[i][1]:12.2f}" for _, e in columns)
        )
    lines.append(f"  {'total'.ljust(width)}" + "".join(f"  {e.total:12.2f}" for _, e in columns))
    lines += [
        "",
        f"'in use' = {usage.requests_per_month:,} requests a month of "
        f"{usage.seconds_per_request:.2f} s each, the database awake all month.",
        (
            f"The database sleeps after {minutes} idle minutes: 'idle, asleep' is a month "
            "nobody uses it (storage and backups still bill; the instance does not)."
            if minutes > 0
            else "The database never sleeps (db_sleep_after_minutes = 0)."
        ),
        "Free tiers (per billing account) are applied. Choices: db_sleep_after_minutes; "
        'vpc_egress = "direct" saves the connector; db_tier sets the floor; '
        "each warm instance (min_instances) bills around the clock.",
    ]
    return lines
