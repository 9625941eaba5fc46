"""Energy samplers: each reads a cumulative energy per device, in joules, since it was opened.

A sampler is either a hardware counter (NVML total-energy counter, AMD SMI energy accumulator, Linux
RAPL `energy_uj`) or an integral of sampled power (an estimate from CPU busy time). The meter reads it at
its start, at a fixed interval from a background thread, and at its end; energy is the counter delta.

`probe_*` functions return a sampler or the reason none is usable, so tests and `hpcq doctor` can say
why a path is skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import psutil

from hpcq.energy import devices as gpu

RAPL_ROOT = Path("/sys/class/powercap")
DEFAULT_WATTS_PER_CPU = 10.0
WATTS_PER_CPU_VARIABLE = "HPCQ_CPU_WATTS_PER_CORE"


class Sampler(Protocol):
    method: str
    devices: list[str]
    notes: str

    def read(self) -> np.ndarray:
        """Cumulative energy per device in joules since the sampler was opened (monotonic)."""


@dataclass
class Unavailable:
    """Why a sampling method cannot be used here."""

    method: str
    reason: str


def unwrap_delta(previous: int, current: int, max_range: int) -> int:
    """Counter increase from `previous` to `current` for a counter that wraps to 0 after `max_range`."""
    return current - previous if current >= previous else current + max_range - previous


class _WrappingCounters:
    """Accumulates several wrapping raw counters into monotonic totals (in raw units)."""

    def __init__(self, raw: list[int], max_ranges: list[int]):
        self._last = list(raw)
        self._max = list(max_ranges)
        self._total = [0] * len(raw)

    def update(self, raw: list[int]) -> list[int]:
        for i, value in enumerate(raw):
            self._total[i] += unwrap_delta(self._last[i], value, self._max[i])
            self._last[i] = value
        return self._total


class NvmlSampler:
    """NVML `nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load, Volta and newer) per GPU."""

    method = "nvml"

    def __init__(self, handles: list[Any], indices: list[int]):
        import pynvml

        self._nvml = pynvml
        self._handles = handles
        self.devices = [f"gpu{i}: {gpu.nvml_name(h)}" for i, h in zip(indices, handles)]
        self.notes = "NVML total-energy counter deltas; counter refreshes every ~20-100 ms"
        self._start = self._millijoules()

    def _millijoules(self) -> np.ndarray:
        return np.array([self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles], dtype=float)

    def read(self) -> np.ndarray:
        return (self._millijoules() - self._start) / 1e3


class AmdSmiSampler:
    """AMD SMI energy accumulator × counter resolution (µJ) per GPU package.

    MI250X: the driver reports energy only on the even GCD of each package, and that value covers both
    GCDs, so odd GCDs are dropped and each even one is labelled as the package.
    """

    method = "amdsmi"

    def __init__(self, handles: list[Any], indices: list[int], names: list[str]):
        import amdsmi

        self._amdsmi = amdsmi
        self._handles = handles
        self.devices = [f"gpu{i}: {name}" for i, name in zip(indices, names)]
        self.notes = "AMD SMI energy accumulator deltas; MI250X even GCDs carry both GCDs of a package"
        first = [self._raw(h) for h in handles]
        self._counters = _WrappingCounters([r for r, _ in first], [2**64] * len(first))
        self._resolution_uj = [res for _, res in first]

    def _raw(self, handle: Any) -> tuple[int, float]:
        count = self._amdsmi.amdsmi_get_energy_count(handle)
        accumulator = count.get("energy_accumulator", count.get("power"))  # key was "power" before 6.2.1
        return int(accumulator), float(count["counter_resolution"])

    def read(self) -> np.ndarray:
        totals = self._counters.update([self._raw(h)[0] for h in self._handles])
        return np.array(totals, dtype=float) * np.array(self._resolution_uj) / 1e6


def rapl_zones(root: Path = RAPL_ROOT) -> list[Path]:
    """Top-level RAPL package zones (`intel-rapl:N`) whose counters this process can read.

    Sub-zones (`intel-rapl:N:M`, cores and DRAM parts of a package) and `psys` (which contains the
    packages) are left out so that nothing is counted twice.
    """
    zones = []
    for zone in sorted(root.glob("*rapl:*")):
        if zone.name.count(":") != 1:
            continue
        try:
            name = (zone / "name").read_text().strip()
            int((zone / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        if name != "psys":
            zones.append(zone)
    return zones


class RaplSampler:
    """Linux powercap RAPL package counters (`energy_uj`, wrapping at `max_energy_range_uj`)."""

    method = "rapl"

    def __init__(self, zones: list[Path]):
        self._files = [zone / "energy_uj" for zone in zones]
        self.devices = [f"{zone.name}: {(zone / 'name').read_text().strip()}" for zone in zones]
        self.notes = "RAPL package energy (CPU sockets; DRAM sub-zones not added)"
        max_ranges = [int((zone / "max_energy_range_uj").read_text()) for zone in zones]
        self._counters = _WrappingCounters(self._raw(), max_ranges)

    def _raw(self) -> list[int]:
        return [int(path.read_text()) for path in self._files]

    def read(self) -> np.ndarray:
        return np.array(self._counters.update(self._raw()), dtype=float) / 1e6


def busy_fraction(before: Any, after: Any) -> float:
    """Share of all CPUs' time that was not idle between two `psutil.cpu_times()` snapshots."""
    total = sum(after) - sum(before)
    if total <= 0:
        return 0.0
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0))
    return min(max(1.0 - idle / total, 0.0), 1.0)


def process_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds used by this process (all threads) and its waited-for children."""
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


ESTIMATE_SCOPES = ("process", "system")


class EstimateSampler:
    """Not a measurement: full-load watts × CPU busy fraction (psutil), integrated over time.

    scope="process" charges only this process's CPU time (fair on a shared node, and what a run caused);
    scope="system" charges the busy time of the whole node, like RAPL would. Full-load watts default to
    `HPCQ_CPU_WATTS_PER_CORE` (else 10 W) × logical CPUs; pass `full_load_watts` for a known TDP.
    Idle power is not included.
    """

    method = "estimate"

    def __init__(self, full_load_watts: float | None = None, scope: str = "process"):
        if scope not in ESTIMATE_SCOPES:
            raise ValueError(f"estimate scope {scope!r} is unknown; use one of {ESTIMATE_SCOPES}")
        self._cpus = os.cpu_count() or 1
        if full_load_watts is None:
            full_load_watts = float(os.environ.get(WATTS_PER_CPU_VARIABLE, DEFAULT_WATTS_PER_CPU)) * self._cpus
        if not full_load_watts > 0:
            raise ValueError(f"full_load_watts={full_load_watts} must be positive (a CPU TDP in watts)")
        self.full_load_watts = float(full_load_watts)
        self.scope = scope
        self.devices = [f"cpu: {self._cpus} logical CPUs ({scope} busy time)"]
        self.notes = (
            f"ESTIMATE, not measured: {self.full_load_watts:g} W at full load x {scope} CPU busy fraction "
            "(psutil); idle power excluded"
        )
        self._process = psutil.Process()
        self._clock = time.perf_counter()
        self._usage = self._snapshot()
        self._joules = 0.0

    def _snapshot(self) -> Any:
        return process_cpu_seconds(self._process) if self.scope == "process" else psutil.cpu_times()

    def _busy(self, before: Any, after: Any, wall_s: float) -> float:
        if self.scope == "system":
            return busy_fraction(before, after)
        return min((after - before) / (wall_s * self._cpus), 1.0) if wall_s > 0 else 0.0

    def read(self) -> np.ndarray:
        clock, usage = time.perf_counter(), self._snapshot()
        wall = clock - self._clock
        self._joules += self.full_load_watts * self._busy(self._usage, usage, wall) * wall
        self._clock, self._usage = clock, usage
        return np.array([self._joules])


def _select(items: list[Any], indices: list[int] | None, what: str) -> tuple[list[Any], list[int]]:
    chosen = list(range(len(items))) if indices is None else list(indices)
    bad = [i for i in chosen if not 0 <= i < len(items)]
    if bad:
        raise ValueError(f"{what} device indices {bad} do not exist; this node has {len(items)} (0..{len(items) - 1})")
    return [items[i] for i in chosen], chosen


def probe_nvml(indices: list[int] | None = None) -> NvmlSampler | Unavailable:
    try:
        import pynvml
    except ImportError:
        return Unavailable("nvml", "nvidia-ml-py is not installed (pip install 'hpcq[gpu]')")
    handles = gpu.nvml_handles()
    if not handles:
        return Unavailable("nvml", "NVML found no NVIDIA driver or GPU on this node")
    handles, chosen = _select(handles, indices, "NVML")
    try:
        return NvmlSampler(handles, chosen)
    except pynvml.NVMLError as err:
        return Unavailable("nvml", f"the GPU has no NVML energy counter (needs Volta or newer): {err}")


def _mi250x_odd_gcd(name: str, index: int) -> bool:
    return "MI250X" in name.upper() and index % 2 == 1


def probe_amdsmi(indices: list[int] | None = None) -> AmdSmiSampler | Unavailable:
    try:
        import amdsmi
    except ImportError:
        return Unavailable("amdsmi", "amdsmi is not installed (it ships with ROCm: /opt/rocm/share/amd_smi)")
    handles = gpu.amdsmi_handles()
    if not handles:
        return Unavailable("amdsmi", "AMD SMI found no AMD GPU on this node")
    handles, chosen = _select(handles, indices, "AMD SMI")
    names = [gpu.amdsmi_name(h) for h in handles]
    keep = [k for k, (name, i) in enumerate(zip(names, chosen)) if not _mi250x_odd_gcd(name, i)]
    labels = [f"{names[k]} (GCDs {chosen[k]}+{chosen[k] + 1})" if "MI250X" in names[k].upper() else names[k]
              for k in keep]
    try:
        return AmdSmiSampler([handles[k] for k in keep], [chosen[k] for k in keep], labels)
    except amdsmi.AmdSmiException as err:
        return Unavailable("amdsmi", f"AMD SMI energy count unsupported here (e.g. a VM guest): {err}")


def probe_rapl(root: Path = RAPL_ROOT) -> RaplSampler | Unavailable:
    if not root.is_dir():
        return Unavailable("rapl", f"{root} does not exist (no powercap driver, or a VM/container without it)")
    zones = rapl_zones(root)
    if not zones:
        return Unavailable("rapl", f"no readable RAPL package zone under {root} (energy_uj is root-only since "
                                   "Linux 5.10; run as root or ask the site to relax its permissions)")
    return RaplSampler(zones)


def probe_estimate(full_load_watts: float | None = None, scope: str = "process") -> EstimateSampler:
    return EstimateSampler(full_load_watts, scope)
