"""What a gate pass is measured against: the node's copy bandwidth, measured in the same run on every rank
at once, and the size of the last-level cache, which tells runs that stream the state through memory from
runs a cache serves."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from hpcq.bench.scale.launch import barrier, mean_over_ranks
from hpcq.runtime import synchronize

#: bytes copied by the probe: at least 64 MiB so DRAM rather than cache serves it, at most 1 GiB
COPY_BYTES_RANGE = (64 * 2**20, 2**30)
CPU_CACHE_ROOT = Path("/sys/devices/system/cpu/cpu0/cache")
_SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def cpu_last_level_cache_bytes(root: Path = CPU_CACHE_ROOT) -> int:
    """Size of the highest-level data or unified cache of CPU 0 (sysfs), 0 where sysfs does not say."""
    sizes = {}
    for index in root.glob("index*"):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not text:
            continue
        scale = _SIZE_UNITS.get(text[-1].upper(), 1)
        digits = text[:-1] if text[-1].upper() in _SIZE_UNITS else text
        if digits.isdigit():
            sizes[level] = int(digits) * scale
    return sizes[max(sizes)] if sizes else 0


def last_level_cache(device: torch.device) -> tuple[int, str]:
    """(bytes, where the figure comes from) of the cache a gate pass on `device` could be served from."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size), "GPU L2 (torch device properties)"
    size = cpu_last_level_cache_bytes()
    return size, f"CPU last-level cache ({CPU_CACHE_ROOT})" if size else "unknown (sysfs gives no cache size)"


def copy_gbps(nbytes: int, device: torch.device, comm, min_seconds: float) -> float:
    """Per-rank copy bandwidth (read + write) with every rank of `comm` copying at once; mean over ranks."""
    elements = max(COPY_BYTES_RANGE[0], min(nbytes, COPY_BYTES_RANGE[1])) // 4
    source = torch.ones(elements, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    target.copy_(source)  # first touch outside the timing
    synchronize(device)
    barrier(comm)
    copies, start = 0, time.perf_counter()
    while True:
        target.copy_(source)
        synchronize(device)
        copies += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and copies >= 3:
            break
    del source, target
    return mean_over_ranks(comm, 2 * 4 * elements * copies / elapsed / 1e9)
