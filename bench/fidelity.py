"""Fidelity: does our server pass every MLflow REST test that stock `mlflow server` passes?

Runs MLflow's own `tests/tracking/test_rest_tracking.py`, from a checkout of MLflow's
repository given by path (never copied into this repository), twice: once against stock
`mlflow server` and once against our entrypoint behind the IAP check, each started as its own
process per test by `bench/fidelity_plugin.py`. Prints the line the `make bench` row shows:

    stock-passing REST tests that pass on ours: N of N (M more differ by design)

then each stock-passing test that fails on ours, with its by-design reason if it has one.
`--save DIR` keeps the two JUnit reports (DIR/stock.xml, DIR/ours.xml), which
`make bench FIDELITY_JUNIT=DIR` turns into the table's row without running the suites again.

Get a checkout with, for example,
`git clone --filter=blob:none --sparse https://github.com/mlflow/mlflow && git -C mlflow
sparse-checkout set tests` (any commit whose tests run against the installed MLflow).

    python -m bench.fidelity MLFLOW_CHECKOUT [-k EXPR] [--save DIR]
    python -m bench.fidelity --junit STOCK_XML OURS_XML
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_FILE = "tests/tracking/test_rest_tracking.py"


@dataclass(frozen=True)
class Outcome:
    passed: frozenset[str]
    failed: frozenset[str]


def _outcomes(junit: Path) -> Outcome:
    passed, failed = set(), set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        if "skipped" in tags:
            continue
        (failed if tags & {"failure", "error"} else passed).add(name)
    return Outcome(frozenset(passed), frozenset(failed))


def run_suite(
    checkout: Path, kind: str, select: str | None, timeout: int = 300, keep: Path | None = None
) -> Outcome:
    """MLflow's REST test file against one server kind; the per-test outcomes. With `keep`,
    the JUnit report stays there as KIND.xml."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        junit = keep / f"{kind}.xml"
    else:
        junit = Path(tempfile.mkstemp(prefix=f"fidelity-{kind}-", suffix=".xml")[1])
    argv = [sys.executable, "-m", "pytest", TEST_FILE, "-p", "bench.fidelity_plugin", "-q"]
    argv += ["-p", "no:cacheprovider", f"--junitxml={junit}", "-o", f"timeout={timeout}"]
    if select:
        argv += ["-k", select]
    env = dict(os.environ, FIDELITY_SERVER=kind)
    # The checkout's own `tests` package must win over ours: it goes first on the path.
    env["PYTHONPATH"] = os.pathsep.join([str(checkout), str(REPO)])
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True)
    try:
        if junit.stat().st_size == 0:
            # pytest never got to run a test (the plugin or the checkout's conftest failed).
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise SystemExit(f"bench.fidelity: pytest ran no test against {kind}:\n{tail}")
        return _outcomes(junit)
    finally:
        if keep is None:
            junit.unlink(missing_ok=True)


# Tests that assert what ours changes on purpose (issue 14), and why; listed apart from misses.
_STAMPED = "identity stamping: a run's user is the verified IAP email, not what the client sends"
_TAGGED = "identity stamping: experiments and logged models carry an mlflow.user tag"
_TRACED = "identity stamping: a trace's metadata carries mlflow.trace.user"
_CONFINED = "artifact locations outside the deployment's own artifact root are refused"
BY_DESIGN = {
    "test_create_run_all_args": _STAMPED,
    "test_create_run_defaults": _STAMPED,
    "test_create_promptlab_run_handler_returns_expected_results": _STAMPED,
    "test_set_experiment_tag": _TAGGED,
    "test_create_logged_model": _TAGGED,
    "test_set_logged_model_tags": _TAGGED,
    "test_delete_logged_model_tag": _TAGGED,
    "test_legacy_start_and_end_trace_v2": _TRACED,
    "test_create_get_search_experiment": _CONFINED,
}


def by_design(name: str) -> str | None:
    test = name.split("::")[-1].split("[")[0]
    return BY_DESIGN.get(test)


def split_misses(missing: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Misses by their by-design reason (test names without the module), and the unexplained."""
    designed: dict[str, list[str]] = {}
    unexplained: list[str] = []
    for name in missing:
        test = name.split("::")[-1]
        why = by_design(test)
        if why:
            designed.setdefault(why, []).append(test)
        else:
            unexplained.append(test)
    return designed, unexplained


@dataclass(frozen=True)
class Result:
    """Stock-passing tests: how many pass on ours, those that differ by design, the rest."""

    passing: int
    designed: dict[str, list[str]]
    unexplained: list[str]

    @property
    def expected(self) -> int:
        """Stock-passing tests less those that assert what ours changes on purpose."""
        return self.passing + len(self.unexplained)

    @property
    def differ(self) -> int:
        return sum(len(tests) for tests in self.designed.values())

    def headline(self) -> str:
        return (
            f"stock-passing REST tests that pass on ours: {self.passing} of {self.expected} "
            f"({self.differ} more differ by design)"
        )


def compare(stock: Outcome, ours: Outcome) -> tuple[int, int, list[str]]:
    """(stock-passing tests that pass on ours, stock-passing tests, those that do not)."""
    missing = sorted(stock.passed - ours.passed)
    return len(stock.passed) - len(missing), len(stock.passed), missing


def result(stock: Outcome, ours: Outcome) -> Result:
    ok, _, missing = compare(stock, ours)
    designed, unexplained = split_misses(missing)
    return Result(ok, designed, unexplained)


def from_junit(folder: Path) -> Result:
    """The result of a finished `--save` run: FOLDER/stock.xml against FOLDER/ours.xml."""
    files = [folder / "stock.xml", folder / "ours.xml"]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise SystemExit(
            f"bench.fidelity: no {', '.join(absent)}: run python -m bench.fidelity "
            f"MLFLOW_CHECKOUT --save {folder} first"
        )
    return result(_outcomes(files[0]), _outcomes(files[1]))


def fidelity(checkout: Path, select: str | None = None, keep: Path | None = None) -> Result:
    if not (checkout / TEST_FILE).is_file():
        raise SystemExit(f"bench.fidelity: no {TEST_FILE} in {checkout}: give MLflow's repo")
    stock = run_suite(checkout, "stock", select, keep=keep)
    ours = run_suite(checkout, "ours", select, keep=keep)
    return result(stock, ours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, nargs="?", help="a checkout of MLflow's repository")
    parser.add_argument("-k", dest="select", help="pytest -k expression (a subset)")
    parser.add_argument("--save", type=Path, metavar="DIR", help="Keep the JUnit reports in DIR.")
    parser.add_argument(
        "--junit",
        nargs=2,
        type=Path,
        metavar=("STOCK_XML", "OURS_XML"),
        help="Compare two finished runs' JUnit files instead of running the suites.",
    )
    args = parser.parse_args(argv)
    if args.junit:
        outcome = result(_outcomes(args.junit[0]), _outcomes(args.junit[1]))
    elif args.checkout is not None:
        save = args.save.resolve() if args.save else None
        outcome = fidelity(args.checkout.resolve(), args.select, save)
    else:
        parser.error("give an MLflow checkout, or --junit STOCK_XML OURS_XML")
    print(outcome.headline())
    for why, tests in outcome.designed.items():
        print(f"  by design ({why}): {', '.join(tests)}")
    for name in outcome.unexplained:
        print(f"  passes on stock, fails on ours: {name}")
    return 0 if not outcome.unexplained else 1


if __name__ == "__main__":
    sys.exit(main())
