"""`EnergyMeter`: energy and mean power of a block of code, from the best sampler this node offers.

    with EnergyMeter(interval_s=0.1) as meter:
        run()
    write_run(..., energy=meter.reading.as_dict())

Preference order for method="auto": NVML (NVIDIA GPUs), AMD SMI (AMD GPUs), RAPL (CPU packages),
then a labelled estimate. The method is always recorded. Several ranks on one node must not all
meter the same GPUs: meter from one rank per node, or pass each rank's physical GPU,
`devices=[hpcq.energy.devices.physical_gpu_of(torch_index)]` (NVML and AMD SMI number physical devices;
torch's index counts only the visible ones).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from hpcq.energy import samplers
from hpcq.errors import ConfigError, ResourceError

METHODS = ("auto", "nvml", "amdsmi", "rapl", "estimate")


@dataclass
class EnergyReading:
    """What one metered block consumed."""

    method: str
    joules: float
    mean_watts: float
    duration_s: float
    interval_s: float
    devices: list[str]
    device_joules: np.ndarray
    t_s: np.ndarray
    power_w: np.ndarray
    window_start_utc: str
    notes: str

    def as_dict(self) -> dict[str, Any]:
        """The `energy/` group of a run file (`write_run(energy=...)`)."""
        return {
            "method": self.method,
            "joules": self.joules,
            "mean_watts": self.mean_watts,
            "duration_s": self.duration_s,
            "interval_s": self.interval_s,
            "devices": list(self.devices),
            "device_joules": self.device_joules,
            "t_s": self.t_s,
            "power_w": self.power_w,
            "window_start_utc": self.window_start_utc,
            "units": "J",
            "notes": self.notes,
        }


def open_sampler(method: str = "auto", devices: list[int] | None = None,
                 full_load_watts: float | None = None, estimate_scope: str = "process") -> samplers.Sampler:
    """The sampler for `method`; "auto" takes the first usable of nvml, amdsmi, rapl, estimate."""
    if method not in METHODS:
        raise ConfigError(f"energy method {method!r} is unknown; use one of {', '.join(METHODS)}")
    probes = {
        "nvml": lambda: samplers.probe_nvml(devices),
        "amdsmi": lambda: samplers.probe_amdsmi(devices),
        "rapl": samplers.probe_rapl,
        "estimate": lambda: samplers.probe_estimate(full_load_watts, estimate_scope),
    }
    order = list(probes) if method == "auto" else [method]
    reasons = []
    for name in order:
        found = probes[name]()
        if not isinstance(found, samplers.Unavailable):
            return found
        reasons.append(f"{found.method}: {found.reason}")
    raise ResourceError(f"energy method {method!r} is not usable here ({'; '.join(reasons)}); use method='auto'")


class EnergyMeter:
    """Context manager measuring energy (J) and mean power (W) of its block, sampled every `interval_s`.

    `full_load_watts` and `estimate_scope` ("process" or "system") configure the estimate fallback only.

    `sync` (e.g. `torch.cuda.synchronize`) is called before the first and last reading so queued GPU work
    is counted inside the block. After the block, `meter.reading` holds an `EnergyReading`.
    """

    def __init__(self, method: str = "auto", *, interval_s: float = 0.1, devices: list[int] | None = None,
                 full_load_watts: float | None = None, estimate_scope: str = "process",
                 sync: Callable[[], Any] | None = None):
        if not interval_s > 0:
            raise ConfigError(f"interval_s={interval_s} must be a positive number of seconds (e.g. 0.1)")
        self.method = method
        self.interval_s = float(interval_s)
        self._devices = devices
        self._full_load_watts = full_load_watts
        self._estimate_scope = estimate_scope
        self._sync = sync
        self._stop = threading.Event()
        self._samples: list[tuple[float, np.ndarray]] = []
        self._thread: threading.Thread | None = None
        self.reading: EnergyReading | None = None

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), self._sampler.read()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> EnergyMeter:
        self._stop.clear()
        self._samples = []
        self.reading = None
        self._sampler = open_sampler(self.method, self._devices, self._full_load_watts, self._estimate_scope)
        self._start_utc = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        if self._sync is not None:
            self._sync()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="hpcq-energy", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sync is not None:
            self._sync()
        self._stop.set()
        self._thread.join()
        self._sample()
        self.reading = _reading(self._sampler, self._samples, self.interval_s, self._start_utc)


def _reading(sampler: samplers.Sampler, samples: list[tuple[float, np.ndarray]], interval_s: float,
             start_utc: str) -> EnergyReading:
    clock = np.array([t for t, _ in samples])
    energy = np.stack([e for _, e in samples])  # [sample, device], cumulative joules
    device_joules = energy[-1] - energy[0]
    duration = float(clock[-1] - clock[0])
    steps = np.diff(clock)[:, None]
    power = np.diff(energy, axis=0) / np.where(steps > 0, steps, np.inf)
    total = float(device_joules.sum())
    return EnergyReading(
        method=sampler.method,
        joules=total,
        mean_watts=total / duration if duration > 0 else 0.0,
        duration_s=duration,
        interval_s=interval_s,
        devices=list(sampler.devices),
        device_joules=device_joules,
        t_s=clock[1:] - clock[0],
        power_w=power,
        window_start_utc=start_utc,
        notes=sampler.notes,
    )
