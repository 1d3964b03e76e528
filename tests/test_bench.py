"""bench/run.py's own arithmetic and waiting: the spread of paired ratios, and settle()."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.run import Samples, settle


def test_the_spread_is_of_the_per_run_ratios_not_of_each_side():
    """A machine twice as slow in one run halves both sides of it: the ratio holds, and so
    must the spread (each side alone swings by half its median)."""
    ours, stock = Samples(), Samples()
    for fast in (1.0, 0.5, 1.0):
        ours.add("rate", 300 * fast)
        stock.add("rate", 100 * fast)
    assert ours.spread("rate") == pytest.approx(0.5)
    assert ours.paired_spread(stock, "rate") == pytest.approx(0.0)
    stock.add("rate", 50)  # unpaired: no paired spread
    assert ours.paired_spread(stock, "rate") is None


def test_settle_returns_once_idle_and_refuses_a_busy_server():
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert settle(idle.pid, timeout=10, window=0.2) < 5
        with pytest.raises(RuntimeError, match="still busy"):
            settle(busy.pid, timeout=1.5, window=0.2)
    finally:
        idle.kill()
        busy.kill()
