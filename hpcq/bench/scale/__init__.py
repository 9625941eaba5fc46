"""`hpcq bench scale`: time per gate pass of one state vector split over MPI ranks, against the memory-copy
bandwidth of the same node measured in the same run; strong and weak scaling; one HDF5 file per run.

Workload: the forward pass (<Z_0>, one sample, no gradient) of the paper's re-uploading ansatz at each qubit
count A..B and each rank count. A *gate pass* is one fused block applied to the whole state, which reads and
writes every amplitude once, so it moves at least 2·2^n·(bytes per amplitude) bytes. The time per pass is the
forward's wall time (slowest rank) over its number of fused blocks, so layout copies, index-bit swaps and
Python overhead all count against it. A block of k qubits does 2^k multiply-adds per amplitude, so wider
fusion (`--fused-qubits`; default, the backend's own: 3 for the distributed backend's compiled CPU kernels,
else 5) means fewer, more compute-heavy passes. `--kernel torch` times the distributed backend's PyTorch path
instead of its compiled kernels. Per rank:

* achieved GB/s = bytes moved per pass / ranks / time per pass;
* copy GB/s = a `Tensor.copy_` of a buffer as large as the rank's slice (64 MiB..1 GiB, so DRAM rather than
  cache), counting read + write, timed on every rank of the run at once, just before the run;
* communication: bytes each rank sent and seconds it spent in index-bit swaps, per forward;
* the last-level cache of the device (CPU: sysfs; GPU: its L2), so that `hpcq energy` and the scaling plot can
  tell runs that stream the state through memory from runs served by the cache.

Strong scaling at fixed n: t(n, 1) / (r · t(n, r)); weak scaling at fixed local size: t(n − log2 r, 1) /
t(n, r). Output: `--out X.h5` is a `bench_scale_summary` file (the tables, any runs skipped and why) and each
run is `X/n<NN>_r<R>.h5` of kind `bench_scale` (final/: n_qubits, ranks, time_per_pass_s, bytes_moved,
achieved_gbps, copy_gbps, comm_time_s, comm_bytes, ...; energy/: the runs' EnergyMeter readings), which
`hpcq aggregate`, `hpcq energy --results` and `hpcq report` read.

`--peer qsim,aer,qulacs` (one rank) also times other simulators on the identical RY/CNOT gate list
(`peers`), checks that each gives hpcq's <Z_0> (1e-4 in single precision, 1e-8 in double) and stores
per peer its seconds per call, its <Z_0> and the ratio peer seconds / hpcq seconds (above 1: hpcq is faster).

`--gradient` also times forward+gradient calls (<Z_0> backpropagated to the weights and the sample's features,
the adjoint method) on the same circuit and blocks, and stores their seconds per call and the ratio to the
forward's (`gradient_time_per_call_s`, `gradient_ratio`).

The package, one idea per module: `spec` (what to run, the command line's parsers), `launch` (mpiexec
relaunch, sub-communicators, the ranks' reductions), `memory` (a run's memory plan), `bandwidth` (the copy
probe and the cache size), `timing`, `energy`, `peers`, `run` (one timed run), `sweep` (every run and the
scaling tables), `files` (the HDF5 files) and `tables` (the terminal report).
"""

from __future__ import annotations

import json
from pathlib import Path

from hpcq.bench.scale.bandwidth import cpu_last_level_cache_bytes
from hpcq.bench.scale.files import write_results
from hpcq.bench.scale.launch import relaunch
from hpcq.bench.scale.spec import BACKENDS, ScaleSpec, parse_qubits, parse_ranks
from hpcq.bench.scale.sweep import run_scale_bench, scaling_tables
from hpcq.bench.scale.tables import render
from hpcq.runtime import mpi_world


def bench_scale(spec: ScaleSpec, out: Path, as_json: bool = False) -> int:
    """The `hpcq bench scale` verb: relaunch under mpiexec when more ranks are asked for than this process
    has, else run, write and print (rank 0). Returns the exit status."""
    spec.validate()
    if mpi_world().size == 1 and max(spec.ranks) > 1:
        return relaunch(max(spec.ranks), spec.arguments(out, as_json), spec.threads)
    report = run_scale_bench(spec, say=(lambda _: None) if as_json else print)
    if report is None:
        return 0
    paths = write_results(report, out)
    report["files"] = [str(p) for p in paths]
    if as_json:
        print(json.dumps(report, default=float))
    else:
        render(report)
        print(f"wrote {paths[0]} and {len(paths) - 1} run file(s) under {paths[0].parent / paths[0].stem}")
    return 0


__all__ = ["BACKENDS", "ScaleSpec", "bench_scale", "cpu_last_level_cache_bytes", "parse_qubits",
           "parse_ranks", "render", "run_scale_bench", "scaling_tables", "write_results"]
