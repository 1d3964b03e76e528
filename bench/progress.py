"""What a bench run is doing now, on stderr: a full run takes about 35 minutes and its table comes
only at the end, on stdout.

The clock lives here, not in bench/run.py: `python -m bench.run` runs that file as __main__, and
bench/containers.py importing it by name loads it a second time, clock and all, so the
container steps counted from their own start."""

from __future__ import annotations

import sys
import time

_STARTED = time.monotonic()


def step(what: str) -> None:
    """One line as a step begins, with the time since the run began."""
    minutes, seconds = divmod(int(time.monotonic() - _STARTED), 60)
    print(f"bench {minutes:02d}:{seconds:02d}  {what}", file=sys.stderr, flush=True)
