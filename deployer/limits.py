"""Google Cloud's limits the settings must fit, read from limits.json (the one copy).

Connection caps per Cloud SQL tier, Cloud Run's memory range per vCPU count, and the regions
that offer both Cloud Run and Cloud SQL. The JSON names its sources and the date it was checked;
Terraform reads the same file, so the two sides cannot disagree.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

LIMITS_PATH = Path(__file__).with_name("limits.json")
_MEMORY = re.compile(r"([0-9]+)(Mi|Gi)")


@functools.cache
def limits() -> dict[str, Any]:
    return json.loads(LIMITS_PATH.read_text(encoding="utf-8"))


def max_connections(tier: str) -> int:
    """Cloud SQL's default max_connections for a tier (the smaller engine's)."""
    table = limits()
    return table["db_tier_max_connections"].get(tier, table["db_default_max_connections"])


def regions() -> list[str]:
    return list(limits()["regions"])


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The choice a near-miss was most likely meant to be, if any is close."""
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def region_problem(region: str) -> str | None:
    if region in limits()["regions"]:
        return None
    guess = closest(region, regions())
    hint = f"did you mean {guess}? " if guess else ""
    return (
        f"is not a region that offers both Cloud Run and Cloud SQL ({hint}list checked "
        f"{limits()['checked']} in deployer/limits.json)"
    )


def memory_mib(memory: str) -> int | None:
    m = _MEMORY.fullmatch(memory)
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def cpu_memory_problem(cpu: str, memory: str) -> str | None:
    """Cloud Run's rule for a vCPU count and a memory size, or None when they fit."""
    mib = memory_mib(memory)
    span = limits()["cloud_run_memory_mib_by_cpu"].get(cpu)
    if mib is None or span is None:
        return None  # the fields themselves are reported as malformed
    low, high = span
    if low <= mib <= high:
        return None
    return (
        f"Cloud Run needs {_size(low)} to {_size(high)} of memory with {cpu} vCPU "
        f"(memory = {memory!r}): change memory or cpu"
    )


def _size(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
