"""bench/fidelity.py's comparison: which stock-passing MLflow REST tests fail on ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fidelity import Outcome, _outcomes, by_design, compare, run_suite

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


def test_a_suite_that_runs_no_test_is_an_error_not_an_empty_result(tmp_path: Path):
    """The plugin once imported our `tests` package, which MLflow's shadows: every run failed
    at collection, and the harness read the empty report as a parse error (or as 0 of 0)."""
    test_file = tmp_path / "tests" / "tracking" / "test_rest_tracking.py"
    test_file.parent.mkdir(parents=True)
    test_file.write_text("def test_x():\n    pass\n")
    (tmp_path / "conftest.py").write_text("raise ImportError('no module named tests.support')\n")
    with pytest.raises(SystemExit, match=r"ran no test against stock:(.|\n)*tests\.support"):
        run_suite(tmp_path, "stock", None)
