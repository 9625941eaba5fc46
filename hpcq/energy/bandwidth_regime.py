"""Which bench_scale runs measure memory traffic, rather than call overhead or the speed of a cache.

A gate pass streams the whole local state through memory once. While the state is small enough to stay in the
last-level cache, its time per pass measures launch and Python overhead or cache bandwidth, and says nothing
about the 2^n memory-bound regime that the energy model extrapolates to 30-50 qubits. A run counts as in the
regime when its local state is at least `CACHE_MULTIPLE` times the last-level cache of the device it ran on:
a sweep over a state larger than an LRU cache evicts every line before its reuse, and the factor 2 leaves room
for caches that are not strictly LRU and for ranks that share one cache.
"""

from __future__ import annotations

import pandas as pd

CACHE_MULTIPLE = 2.0
LOCAL_STATE = "final.local_state_bytes"
CACHE = "final.cache_bytes"


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:,.0f} KiB"


def cache_reason(local_state_bytes: float, cache_bytes: float) -> str:
    """Why a run is below the memory-bound regime, or "" when its state is well beyond the cache."""
    if not cache_bytes > 0:
        return "the device's cache size is not recorded (a run of an older hpcq): rerun `hpcq bench scale`"
    if local_state_bytes >= CACHE_MULTIPLE * cache_bytes:
        return ""
    return (f"its {_mib(local_state_bytes)} state per rank is within {CACHE_MULTIPLE:g}x the {_mib(cache_bytes)} "
            "last-level cache: it times overhead and cache, not the 2^n memory traffic the model extrapolates")


def cache_reasons(runs: pd.DataFrame) -> pd.Series:
    """`cache_reason` for each bench_scale row ("" where the run is in the memory-bound regime)."""
    local = runs[LOCAL_STATE] if LOCAL_STATE in runs.columns else pd.Series(0.0, index=runs.index)
    cache = runs[CACHE] if CACHE in runs.columns else pd.Series(0.0, index=runs.index)
    return pd.Series([cache_reason(float(l), float(c) if pd.notna(c) else 0.0) for l, c in zip(local, cache)],
                     index=runs.index, dtype=object)


def in_regime(runs: pd.DataFrame) -> pd.Series:
    """True for bench_scale rows whose local state is well beyond the last-level cache."""
    return cache_reasons(runs) == ""
