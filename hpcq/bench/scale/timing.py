"""Seconds per call of a collective step, as the slowest rank sees them."""

from __future__ import annotations

import time
from typing import Any, Callable

from hpcq.bench.scale.launch import barrier, max_over_ranks


def timed_calls(step: Callable[[], Any], comm, min_seconds: float,
                on_warm: Callable[[], Any] | None = None) -> tuple[float, int, float]:
    """(seconds per call on the slowest rank, calls, warm-up seconds) after one untimed call (then
    `on_warm()`); the ranks agree when to stop, since every call is collective."""
    barrier(comm)
    start = time.perf_counter()
    step()
    warmup = max_over_ranks(comm, time.perf_counter() - start)
    if on_warm is not None:
        on_warm()
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = max_over_ranks(comm, time.perf_counter() - start)
        if elapsed >= min_seconds:
            return elapsed / calls, calls, warmup
