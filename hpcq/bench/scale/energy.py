"""The energy of a run over all its ranks, from each rank's EnergyMeter reading."""

from __future__ import annotations

import platform
from typing import Any


def combined_energy(reading, comm) -> dict[str, Any] | None:
    """Every rank's EnergyMeter reading combined on rank 0: summed over ranks, except package-wide RAPL
    counters, which count once per node."""
    local = {"host": platform.node(), "method": reading.method, "joules": reading.joules,
             "duration_s": reading.duration_s, "interval_s": reading.interval_s,
             "devices": list(reading.devices), "notes": reading.notes}
    readings = [local] if comm is None or comm.Get_size() == 1 else comm.gather(local, root=0)
    if readings is None:
        return None
    if local["method"] == "rapl":
        readings = list({r["host"]: r for r in reversed(readings)}.values())
    joules = sum(r["joules"] for r in readings)
    duration = max(r["duration_s"] for r in readings)
    return {"method": local["method"], "joules": joules,
            "mean_watts": joules / duration if duration > 0 else 0.0, "duration_s": duration,
            "interval_s": local["interval_s"],
            "devices": [f"{r['host']}: {d}" for r in readings for d in r["devices"]],
            "ranks_metered": len(readings), "units": "J", "notes": local["notes"]}
