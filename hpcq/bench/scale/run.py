"""One timed run of `hpcq bench scale`: n qubits on r ranks, its forward (and forward+gradient) calls, the
copy bandwidth and energy around them, and the row of figures it leaves."""

from __future__ import annotations

import os
from typing import Any

import torch

from hpcq.bench.scale.bandwidth import copy_gbps, last_level_cache
from hpcq.bench.scale.energy import combined_energy
from hpcq.bench.scale.launch import mean_over_ranks
from hpcq.bench.scale.memory import check_run_fits
from hpcq.bench.scale.peers import peer_columns
from hpcq.bench.scale.spec import ScaleSpec
from hpcq.bench.scale.timing import timed_calls
from hpcq.circuits import reuploading_ansatz
from hpcq.runtime import node_local_rank, synchronize
from hpcq.sim.precision import DTYPES


def _device(spec: ScaleSpec) -> torch.device:
    """`--device cuda`: this rank's GPU, from its rank on the node (the job's rank would send the ranks of a
    second node past its GPUs' count, back onto its first GPUs)."""
    device = torch.device(spec.device)
    if device.type == "cuda" and device.index is None:
        from hpcq.energy.devices import logical_gpu

        device = torch.device("cuda", logical_gpu(node_local_rank(), torch.cuda.device_count()))
    return device


def _default_fused_qubits(spec: ScaleSpec, circuit, device: torch.device) -> int:
    if spec.backend == "distributed":
        from hpcq.sim.distributed import fused_qubits_for

        return fused_qubits_for(circuit, device, kernel=spec.kernel)
    from hpcq.sim.compile import FUSED_QUBITS

    return FUSED_QUBITS  # the statevector and custatevec backends' default


def run_one(spec: ScaleSpec, n: int, ranks: int, comm) -> dict[str, Any]:
    """Time one (qubits, ranks) run on the ranks of `comm` (None: this process alone)."""
    from hpcq.energy.devices import physical_gpu_of
    from hpcq.energy.meter import EnergyMeter
    from hpcq.sim import expectation
    from hpcq.sim.distributed import CommStats
    from hpcq.sim.compile import FUSED_ROTATIONS, compile_circuit

    device = _device(spec)
    dtype = DTYPES[spec.dtype]
    n_global = ranks.bit_length() - 1
    load = os.getloadavg()[0]
    circuit = reuploading_ansatz(n, spec.layers, spec.connectivity, spec.reuploads)
    check_run_fits(spec, circuit, ranks, comm, device)
    complex_state = spec.backend == "custatevec"  # cuStateVec keeps complex amplitudes; the others stay real
    amplitude = torch.finfo(dtype).bits // 8 * (2 if complex_state else 1)
    local_bytes = amplitude * 2 ** (n - n_global)
    copy = copy_gbps(local_bytes, device, comm, min(spec.min_seconds, 0.5))
    fused = spec.fused_qubits or _default_fused_qubits(spec, circuit, device)
    passes = len(compile_circuit(circuit, min(fused, n - n_global), FUSED_ROTATIONS).blocks)
    generator = torch.Generator().manual_seed(n)
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6.28
    features = torch.rand(1, circuit.n_features, generator=generator, dtype=torch.float64) * 3.14
    weights, features = weights.to(dtype).to(device), features.to(dtype).to(device)
    observable = ["I" * (n - 1) + "Z"]
    options: dict[str, Any] = {"max_fused_qubits": fused, "max_fused_rotations": FUSED_ROTATIONS}
    stats = CommStats()
    if spec.backend == "distributed":
        options.update(comm=comm, stats=stats, kernel=spec.kernel)
    values: list[float] = []

    def step() -> None:
        with torch.no_grad():
            values.append(float(expectation(circuit, weights, features, observable, backend=spec.backend,
                                            **options)[0, 0]))
        synchronize(device)

    # NVML / AMD SMI number physical GPUs; torch's cuda:N is the Nth one this rank sees
    physical = physical_gpu_of(device.index) if device.type == "cuda" else None
    meter = EnergyMeter(interval_s=0.1, devices=None if physical is None else [physical],
                        sync=(lambda: synchronize(device)))
    warm = CommStats()
    with meter:
        seconds, calls, warmup = timed_calls(step, comm, spec.min_seconds, on_warm=lambda: warm.add(stats))
    per_call_bytes = mean_over_ranks(comm, (stats.bytes_sent - warm.bytes_sent) / calls)
    per_call_comm_s = mean_over_ranks(comm, (stats.seconds - warm.seconds) / calls)
    exchanges = (stats.exchanges - warm.exchanges) / calls
    energy = combined_energy(meter.reading, comm)
    gradient: dict[str, float] = {}
    if spec.gradient:
        def gradient_step() -> None:
            w, x = weights.detach().requires_grad_(), features.detach().requires_grad_()
            expectation(circuit, w, x, observable, backend=spec.backend, **options)[0, 0].backward()
            synchronize(device)

        gradient_seconds, _, _ = timed_calls(gradient_step, comm, spec.min_seconds)
        gradient = {"gradient_time_per_call_s": gradient_seconds,
                    "gradient_ratio": gradient_seconds / seconds}
    time_per_pass = seconds / passes
    bytes_moved = 2 * amplitude * 2**n
    achieved = bytes_moved / ranks / time_per_pass / 1e9
    cache_bytes, cache_source = last_level_cache(device)
    return {
        **peer_columns(spec, circuit, weights, features, values[-1], seconds), **gradient,
        "n_qubits": n, "ranks": ranks, "time_per_pass_s": time_per_pass, "time_per_call_s": seconds,
        "passes": passes, "calls": calls, "bytes_moved": bytes_moved, "achieved_gbps": achieved,
        "copy_gbps": copy, "bandwidth_fraction": achieved / copy, "comm_time_s": per_call_comm_s,
        "comm_bytes": per_call_bytes,
        "comm_gbps": per_call_bytes / per_call_comm_s / 1e9 if per_call_comm_s else 0.0,
        "exchanges": exchanges, "z0": values[-1], "state_bytes": amplitude * 2**n,
        "local_state_bytes": local_bytes,
        "warmup_s": warmup, "load_1min": load, "threads_per_rank": torch.get_num_threads(), "energy": energy,
        "fused_qubits": fused, "kernel": spec.kernel if spec.backend == "distributed" else "",
        "cache_bytes": cache_bytes, "cache_source": cache_source,
    }
