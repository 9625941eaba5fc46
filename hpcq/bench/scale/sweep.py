"""The whole benchmark: every (qubits, ranks) run of a spec on this MPI world, and the strong and weak
scaling tables drawn from them."""

from __future__ import annotations

import platform
from dataclasses import asdict
from typing import Any, Callable

import torch

from hpcq.bench.scale.launch import split_first, wait_idle
from hpcq.bench.scale.run import run_one
from hpcq.bench.scale.spec import ScaleSpec
from hpcq.errors import ConfigError, ResourceError
from hpcq.runtime import mpi_world


def scaling_tables(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Strong scaling t(n,1)/(r·t(n,r)) and weak scaling t(n−log2 r,1)/t(n,r) from the timed runs."""
    single = {row["n_qubits"]: row["time_per_pass_s"] for row in rows if row["ranks"] == 1}
    strong, weak = [], []
    for row in rows:
        n, r, t = row["n_qubits"], row["ranks"], row["time_per_pass_s"]
        if r == 1:
            continue
        if n in single:
            strong.append({"n_qubits": n, "ranks": r, "efficiency": single[n] / (r * t),
                           "speedup": single[n] / t})
        local = n - (r.bit_length() - 1)
        if local in single:
            weak.append({"n_qubits": n, "local_qubits": local, "ranks": r, "efficiency": single[local] / t})
    return {"strong": strong, "weak": weak}


def run_scale_bench(spec: ScaleSpec, say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Every (qubits, ranks) run of `spec` on this MPI world; the report on world rank 0, None elsewhere."""
    spec.validate()
    world = mpi_world()
    if world.size < max(spec.ranks):
        raise ConfigError(f"--ranks {max(spec.ranks)} needs {max(spec.ranks)} MPI ranks but this job has "
                          f"{world.size}; start it under mpiexec -n {max(spec.ranks)} (or without a "
                          "launcher, and it starts mpiexec itself)")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    # one communicator per rank count, made once: the distributed backend caches facts per communicator
    comms = {r: split_first(world.comm, r) if world.comm is not None else None for r in spec.ranks}
    rows, skipped = [], []
    for n in range(spec.qubits[0], spec.qubits[1] + 1):
        for ranks in spec.ranks:
            if n - (ranks.bit_length() - 1) < 2:
                skipped.append(f"n={n} on {ranks} ranks: fewer than 2 local qubits")
                continue
            comm = comms[ranks]
            if world.rank < ranks:
                if world.rank == 0:
                    say(f"n={n} on {ranks} rank(s) ...")
                try:
                    row = run_one(spec, n, ranks, comm)
                except ResourceError as err:  # raised on every rank alike: the plan uses the smallest limits
                    row = None
                    skipped.append(f"n={n} on {ranks} ranks: {err}")
                if row is not None and world.rank == 0:
                    rows.append(row)
                    say(f"  {row['time_per_pass_s'] * 1e3:.3f} ms per pass, {row['achieved_gbps']:.2f} GB/s "
                        f"per rank ({row['bandwidth_fraction']:.0%} of copy {row['copy_gbps']:.2f} GB/s), "
                        f"load {row['load_1min']:.1f}")
            if world.comm is not None:
                wait_idle(world.comm)
    if world.rank != 0:
        return None
    if not rows:
        raise ResourceError("no run of the benchmark fit: " + "; ".join(skipped))
    return {"spec": asdict(spec), "runs": rows, "skipped": skipped, **scaling_tables(rows),
            "host": platform.node(), "mpi_world": world.size}
