from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def console_script(name: str) -> str:
    """A console script installed by this project into the test's virtual environment."""
    path = BIN / name
    if not path.exists():
        raise AssertionError(f"{name} is not installed in {BIN}: run `make install`")
    return str(path)


# Fail fast: the mlflow client in the test process would otherwise retry a broken call for
# minutes with exponential backoff.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def pytest_unconfigure(config):
    """End the run with one plain `N passed, N failed` line (CI reads the last line)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not hasattr(reporter, "stats"):
        return
    passed = len([r for r in reporter.stats.get("passed", []) if r.when == "call"])
    failed = len(reporter.stats.get("failed", [])) + len(reporter.stats.get("error", []))
    label = os.environ.get("TEST_SUMMARY_LABEL", "tests")
    sys.__stdout__.write(f"{label}: {passed} passed, {failed} failed\n")
    sys.__stdout__.flush()
