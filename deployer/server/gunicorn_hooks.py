"""gunicorn's server hooks for the entrypoint (`gunicorn -c python:deployer.server.gunicorn_hooks`).

`pre_fork` freezes the garbage collector's view of everything the master has loaded, MLflow's
preloaded app included, right before each worker forks, as Python's `gc.freeze` documentation
advises for a process that forks without exec. Without it each worker's full (generation 2)
collection walked the whole inherited app: 180-215 ms a collection, about every 2 s of searching
with 8 clients, which stalled every request in flight on that worker and made ours' search p99
2.6x stock's; and it wrote to the shared pages, so each worker's copy-on-write memory grew.
Measured on this machine, 8 clients searching experiments for 10 s with the freeze made in each
worker as it starts: p99 225 -> 80 ms, no request over 150 ms (from 39 of 1,942), 453 -> 345 MiB
of PSS after the load. `make bench` with this hook (README): ours' experiments/search p99 went
from 2.6x stock's to 1.08x, memory under load from 0.20x to 0.16x.
"""

from __future__ import annotations

import gc
from typing import Any


def pre_fork(server: Any, worker: Any) -> None:
    gc.freeze()
