"""Print the load and fault counts at the end of every run (not only with -s)."""

from __future__ import annotations

COUNTS: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if COUNTS:
        terminalreporter.section("counted: what clients sent vs what the stores hold")
        for line in COUNTS:
            terminalreporter.write_line(line)
