"""bench/fidelity.py's comparison: which stock-passing MLflow REST tests fail on ours."""

from __future__ import annotations

from pathlib import Path

from bench.fidelity import Outcome, _outcomes, by_design, compare

JUNIT = """<?xml version="1.0"?>
<testsuites><testsuite>
<testcase classname="tests.tracking.test_rest_tracking" name="test_a[sqlalchemy]"/>
<testcase classname="tests.tracking.test_rest_tracking" name="test_b[sqlalchemy]">
  <failure message="boom"/></testcase>
<testcase classname="tests.tracking.test_rest_tracking" name="test_c[file]"><skipped/></testcase>
<testcase classname="tests.tracking.test_rest_tracking" name="test_d">
  <error message="x"/></testcase>
</testsuite></testsuites>
"""


def test_junit_outcomes_skip_skipped_and_fail_errors(tmp_path: Path):
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    out = _outcomes(path)
    assert {n.split("::")[1] for n in out.passed} == {"test_a[sqlalchemy]"}
    assert {n.split("::")[1] for n in out.failed} == {"test_b[sqlalchemy]", "test_d"}


def test_only_stock_passing_tests_count():
    stock = Outcome(frozenset({"a", "b", "c"}), frozenset({"d"}))
    ours = Outcome(frozenset({"a", "c", "d"}), frozenset({"b"}))
    assert compare(stock, ours) == (2, 3, ["b"])


def test_by_design_differences_are_named():
    assert "identity" in by_design("m::test_create_run_all_args[sqlalchemy-None]")
    assert by_design("m::test_log_batch[sqlalchemy]") is None
