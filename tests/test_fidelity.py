"""bench/fidelity.py's comparison: which stock-passing MLflow REST tests fail on ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fidelity import Outcome, _outcomes, by_design, compare, from_junit, result, run_suite

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


def _case(name: str, failed: bool) -> str:
    inner = '<failure message="x"/>' if failed else ""
    return f'<testcase classname="m" name="{name}">{inner}</testcase>'


def _report(path: Path, cases: dict[str, bool]) -> None:
    body = "".join(_case(name, failed) for name, failed in cases.items())
    path.write_text(f"<testsuites><testsuite>{body}</testsuite></testsuites>")


def test_saved_reports_give_the_row_the_cli_prints(tmp_path: Path):
    """The bench row and the CLI once disagreed (126 of 126 against 126 of 136): both now
    render one Result, by-design differences counted apart from the N of N."""
    names = ["test_log_batch[sqlalchemy]", "test_create_run_defaults[sqlalchemy]", "test_x"]
    _report(tmp_path / "stock.xml", dict.fromkeys(names, False))
    _report(tmp_path / "ours.xml", {names[0]: False, names[1]: True, names[2]: True})
    outcome = from_junit(tmp_path)
    assert (outcome.passing, outcome.expected, outcome.differ) == (1, 2, 1)
    assert outcome.unexplained == ["test_x"]
    assert outcome.headline() == (
        "stock-passing REST tests that pass on ours: 1 of 2 (1 more differ by design)"
    )


def test_missing_saved_reports_name_the_command_that_makes_them(tmp_path: Path):
    with pytest.raises(SystemExit, match=r"stock\.xml.*bench\.fidelity MLFLOW_CHECKOUT --save"):
        from_junit(tmp_path)


def test_result_without_misses_is_n_of_n():
    same = Outcome(frozenset({"m::a", "m::b"}), frozenset())
    outcome = result(same, same)
    assert (outcome.passing, outcome.expected, outcome.unexplained) == (2, 2, [])
