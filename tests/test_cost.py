"""`deployer cost` by region, awake and asleep, from the dated price table."""

from __future__ import annotations

import tomllib

import pytest

from deployer import cost
from deployer import vars as vars_file

DEFAULTS = {**{f.name: f.default for f in vars_file.FIELDS}, "region": "us-central1"}
IDLE = cost.Usage(0, 0.1, 50)


def test_every_allowed_region_is_priced_and_every_row_is_dated_with_sources():
    table = tomllib.loads(cost.PRICES.read_text())
    assert table["checked"] >= "2026-12-01"
    assert set(table["sources"]) >= {"cloud_run", "cloud_sql", "storage", "cloud_scheduler"}
    assert {"regional_sql", "regional_compute_storage"} <= set(table["sources"])
    assert set(table["regions"]) <= set(cost.allowed_regions()), "a priced region we refuse"
    for region in cost.allowed_regions():
        p = cost.for_region(region)
        assert p.run["vcpu_second"] > 0 and p.sql >= 1.0 and p.compute >= 1.0
        assert p.priced == (region in table["regions"])
        assert cost.estimate({**DEFAULTS, "region": region}, IDLE).total > 0


def test_an_allowed_region_without_a_row_is_estimated_at_base_rates_and_says_so():
    region = next(r for r in cost.allowed_regions() if r not in cost.prices()["regions"])
    lines = cost.report({**DEFAULTS, "region": region}, IDLE)
    assert f"no prices for {region} in the table: shown at us-central1 rates" in lines[0]


def test_prices_differ_by_region_and_by_service_family():
    iowa = cost.estimate(DEFAULTS, IDLE).total
    frankfurt = cost.estimate({**DEFAULTS, "region": "europe-west3"}, IDLE).total
    assert frankfurt > iowa * 1.15
    for tier2 in ("europe-west3", "europe-west2"):  # London is tier 2 too (Cloud Run locations)
        assert (
            cost.for_region(tier2).run["vcpu_second"]
            > cost.for_region("us-central1").run["vcpu_second"]
        ), f"{tier2} is a tier-2 Cloud Run region"
    belgium = cost.for_region("europe-west1")
    assert belgium.sql == 1.0 and belgium.compute > 1.0, "Cloud SQL and Compute differ there"


def test_the_sleeper_job_runs_inside_the_jobs_free_tier():
    """Jobs have their own free tier (cloud.google.com/run/pricing), whatever the service used."""
    busy = cost.Usage(50_000_000, 0.5, 50)
    items = dict(cost.estimate(DEFAULTS, busy).items)
    assert items["Database sleeper (Cloud Scheduler + job)"] == pytest.approx(0.0)


def test_an_unknown_region_says_where_to_add_it():
    with pytest.raises(cost.CostError, match=r"no prices for region 'mars-north1'.*prices\.toml"):
        cost.estimate({**DEFAULTS, "region": "mars-north1"}, IDLE)


def test_asleep_bills_storage_but_no_instance():
    awake = dict(cost.estimate(DEFAULTS, IDLE).items)
    asleep = dict(cost.estimate(DEFAULTS, IDLE, asleep=True).items)
    assert awake["Cloud SQL db-f1-micro"] == pytest.approx(7.67)
    assert asleep["Cloud SQL db-f1-micro"] == 0.0
    storage = next(k for k in awake if k.startswith("Cloud SQL storage"))
    assert asleep[storage] == awake[storage] > 0


def test_perf_optimized_tiers_are_priced_as_enterprise_plus():
    p = cost.for_region("us-central1")
    sql = p["cloud_sql"]
    n2 = cost.database_month("db-perf-optimized-N-2", p)
    assert n2 == pytest.approx(
        730 * (2 * sql["enterprise_plus_vcpu_hour"] + 16 * sql["enterprise_plus_gib_hour"])
    )
    custom = cost.database_month("db-custom-2-16384", p)
    assert n2 > custom, "ENTERPRISE_PLUS costs more than ENTERPRISE for the same shape"


def test_the_idle_targets_against_the_app_engine_design():
    """The bench's rows: awake <= 0.2x App Engine flexible; asleep <= $3 a month."""
    engine = cost.app_engine_flexible_estimate(IDLE, "us-central1").total
    awake = cost.estimate(DEFAULTS, IDLE).total
    asleep = cost.estimate(DEFAULTS, IDLE, asleep=True).total
    assert awake / engine <= 0.2
    assert asleep <= 3.0


def test_report_shows_awake_and_asleep_columns_or_says_it_never_sleeps():
    lines = cost.report(DEFAULTS, cost.Usage(200_000, 0.1, 50))
    assert "idle, awake" in lines[2] and "idle, asleep" in lines[2] and "in use" in lines[2]
    assert any("Database sleeper" in line for line in lines)
    never = cost.report({**DEFAULTS, "db_sleep_after_minutes": 0}, IDLE)
    assert "idle, asleep" not in never[2] and any("never sleeps" in line for line in never)
    assert not any("Database sleeper" in line for line in never)
