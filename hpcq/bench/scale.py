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
(`scale_peers`), checks that each gives hpcq's <Z_0> (1e-4 in single precision, 1e-8 in double) and stores
per peer its seconds per call, its <Z_0> and the ratio peer seconds / hpcq seconds (above 1: hpcq is faster).

`--gradient` also times forward+gradient calls (<Z_0> backpropagated to the weights and the sample's features,
the adjoint method) on the same circuit and blocks, and stores their seconds per call and the ratio to the
forward's (`gradient_time_per_call_s`, `gradient_ratio`).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from hpcq.circuits import reuploading_ansatz
from hpcq.errors import ConfigError, ResourceError
from hpcq.runtime import mpi_world, node_local_rank, synchronize
from hpcq.sim.precision import DTYPES, dtype_named

BACKENDS = ("distributed", "statevector", "custatevec")
COPY_BYTES_RANGE = (64 * 2**20, 2**30)


@dataclass(frozen=True)
class ScaleSpec:
    """What `hpcq bench scale` runs: every qubit count in `qubits` (inclusive) on every rank count."""

    qubits: tuple[int, int]
    ranks: tuple[int, ...]
    backend: str = "distributed"
    layers: int = 1
    connectivity: int = 1
    reuploads: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    min_seconds: float = 1.0
    fused_qubits: int | None = None
    kernel: str = "auto"
    peers: tuple[str, ...] = ()
    gradient: bool = False

    def validate(self) -> None:
        first, last = self.qubits
        if not 2 <= first <= last:
            raise ConfigError(f"--qubits {first}..{last} must satisfy 2 <= A <= B")
        for r in self.ranks:
            if r < 1 or r & (r - 1):
                raise ConfigError(f"--ranks {r} is not a power of two; each global qubit doubles the ranks")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r} is not timed by bench scale; use one of {', '.join(BACKENDS)}")
        from hpcq.sim.kernel.choice import KERNELS

        if self.kernel not in KERNELS:
            raise ConfigError(f"--kernel {self.kernel!r} must be one of {', '.join(KERNELS)}")
        if self.backend != "distributed" and max(self.ranks) > 1:
            raise ConfigError(f"--backend {self.backend} runs on one rank; use --ranks 1 or --backend distributed")
        dtype_named(self.dtype)
        if not self.min_seconds > 0:
            raise ConfigError(f"--min-seconds {self.min_seconds} must be positive")
        if self.fused_qubits is not None and not 1 <= self.fused_qubits <= 10:
            raise ConfigError(f"--fused-qubits {self.fused_qubits} must be between 1 and 10")
        if self.peers and max(self.ranks) > 1:
            raise ConfigError(f"--peer {','.join(self.peers)} times single-process simulators; use --ranks 1")

    def arguments(self, out: Path, as_json: bool) -> list[str]:
        """The command-line arguments that reproduce this spec (for relaunching under mpiexec)."""
        args = ["bench", "scale", "--qubits", f"{self.qubits[0]}..{self.qubits[1]}",
                "--ranks", ",".join(map(str, self.ranks)), "--backend", self.backend, "--layers", str(self.layers),
                "--connectivity", str(self.connectivity), "--reuploads", str(self.reuploads), "--dtype", self.dtype,
                "--device", self.device, "--min-seconds", str(self.min_seconds),
                "--kernel", self.kernel, "--out", str(out)]
        if self.fused_qubits:
            args += ["--fused-qubits", str(self.fused_qubits)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.peers:
            args += ["--peer", ",".join(self.peers)]
        if self.gradient:
            args.append("--gradient")
        return args + (["--json"] if as_json else [])


def parse_qubits(text: str) -> tuple[int, int]:
    """"A..B" (or a single "N") → (A, B)."""
    parts = text.split("..")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ConfigError(f"--qubits {text!r} must be a range A..B such as 10..14 (or one number)")
    return values[0], values[-1]


def parse_ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(sorted({int(r) for r in text.split(",") if r.strip()}))
    except ValueError:
        ranks = ()
    if not ranks:
        raise ConfigError(f"--ranks {text!r} must be a comma-separated list of rank counts such as 1,2,4")
    return ranks


# --- measurements ---------------------------------------------------------------------------------------

def _max(comm, value: float) -> float:
    if comm is None or comm.Get_size() == 1:
        return value
    from mpi4py import MPI

    return comm.allreduce(value, op=MPI.MAX)


def _mean(comm, value: float) -> float:
    if comm is None or comm.Get_size() == 1:
        return value
    return comm.allreduce(value) / comm.Get_size()


def _barrier(comm) -> None:
    if comm is not None and comm.Get_size() > 1:
        comm.Barrier()


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
    _barrier(comm)
    copies, start = 0, time.perf_counter()
    while True:
        target.copy_(source)
        synchronize(device)
        copies += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and copies >= 3:
            break
    del source, target
    return _mean(comm, 2 * 4 * elements * copies / elapsed / 1e9)


def timed_calls(step: Callable[[], Any], comm, min_seconds: float,
                on_warm: Callable[[], Any] | None = None) -> tuple[float, int, float]:
    """(seconds per call on the slowest rank, calls, warm-up seconds) after one untimed call (then
    `on_warm()`); the ranks agree when to stop, since every call is collective."""
    _barrier(comm)
    start = time.perf_counter()
    step()
    warmup = _max(comm, time.perf_counter() - start)
    if on_warm is not None:
        on_warm()
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = _max(comm, time.perf_counter() - start)
        if elapsed >= min_seconds:
            return elapsed / calls, calls, warmup


def combined_energy(reading, comm) -> dict[str, Any] | None:
    """Every rank's EnergyMeter reading combined on rank 0: summed over ranks, except package-wide RAPL
    counters, which count once per node."""
    local = {"host": platform.node(), "method": reading.method, "joules": reading.joules,
             "duration_s": reading.duration_s, "interval_s": reading.interval_s, "devices": list(reading.devices),
             "notes": reading.notes}
    readings = [local] if comm is None or comm.Get_size() == 1 else comm.gather(local, root=0)
    if readings is None:
        return None
    if local["method"] == "rapl":
        readings = list({r["host"]: r for r in reversed(readings)}.values())
    joules = sum(r["joules"] for r in readings)
    duration = max(r["duration_s"] for r in readings)
    return {"method": local["method"], "joules": joules, "mean_watts": joules / duration if duration > 0 else 0.0,
            "duration_s": duration, "interval_s": local["interval_s"],
            "devices": [f"{r['host']}: {d}" for r in readings for d in r["devices"]],
            "ranks_metered": len(readings), "units": "J", "notes": local["notes"]}


# --- one run --------------------------------------------------------------------------------------------

def _memory_check(spec: ScaleSpec, circuit, ranks: int, comm, device: torch.device) -> None:
    """The run's memory plan; raises ResourceError (same on every rank) before anything is allocated."""
    dtype = DTYPES[spec.dtype]
    n = circuit.n_qubits
    if spec.backend == "distributed":
        from hpcq.sim.distributed import check_memory, runs_in_place
        from hpcq.sim.memory import amplitude_bytes

        check_memory(n, ranks, 1, amplitude_bytes(dtype, False), spec.gradient, comm=comm, device=device,
                     min_local_qubits=2, in_place=runs_in_place(circuit, device, kernel=spec.kernel))
    else:
        from hpcq.sim.memory import check_statevector_fits

        check_statevector_fits(n, 1, dtype, spec.backend == "custatevec", device, gradient=spec.gradient)


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
    _memory_check(spec, circuit, ranks, comm, device)
    complex_state = spec.backend == "custatevec"  # cuStateVec keeps complex amplitudes; the others stay real
    amplitude = torch.finfo(dtype).bits // 8 * (2 if complex_state else 1)
    local_bytes = amplitude * 2 ** (n - n_global)
    copy = copy_gbps(local_bytes, device, comm, min(spec.min_seconds, 0.5))
    fused = spec.fused_qubits or _default_fused_qubits(spec, circuit, device)
    passes = len(compile_circuit(circuit, min(fused, n - n_global), FUSED_ROTATIONS).blocks)
    generator = torch.Generator().manual_seed(n)
    weights = (torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6.28).to(dtype).to(device)
    features = (torch.rand(1, circuit.n_features, generator=generator, dtype=torch.float64) * 3.14).to(dtype).to(device)
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
    per_call_bytes = _mean(comm, (stats.bytes_sent - warm.bytes_sent) / calls)
    per_call_comm_s = _mean(comm, (stats.seconds - warm.seconds) / calls)
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
        **_peer_columns(spec, circuit, weights, features, values[-1], seconds), **gradient,
        "n_qubits": n, "ranks": ranks, "time_per_pass_s": time_per_pass, "time_per_call_s": seconds,
        "passes": passes, "calls": calls, "bytes_moved": bytes_moved, "achieved_gbps": achieved,
        "copy_gbps": copy, "bandwidth_fraction": achieved / copy, "comm_time_s": per_call_comm_s,
        "comm_bytes": per_call_bytes, "comm_gbps": per_call_bytes / per_call_comm_s / 1e9 if per_call_comm_s else 0.0,
        "exchanges": exchanges, "z0": values[-1], "state_bytes": amplitude * 2**n, "local_state_bytes": local_bytes,
        "warmup_s": warmup, "load_1min": load, "threads_per_rank": torch.get_num_threads(), "energy": energy,
        "fused_qubits": fused, "kernel": spec.kernel if spec.backend == "distributed" else "",
        "cache_bytes": cache_bytes, "cache_source": cache_source,
    }


def _peer_columns(spec: ScaleSpec, circuit, weights: torch.Tensor, features: torch.Tensor, z0: float,
                  seconds: float) -> dict[str, float]:
    """Each peer's seconds per call, <Z_0> and ratio to hpcq's seconds, on the identical gate list; a peer whose
    <Z_0> differs from hpcq's stops the benchmark (a fast wrong answer is not a result)."""
    from hpcq.bench.scale_peers import bound_gates, peer_call

    columns: dict[str, float] = {}
    gates = bound_gates(circuit, weights, features) if spec.peers else []
    for peer in spec.peers:
        call = peer_call(peer, circuit.n_qubits, gates, DTYPES[spec.dtype], torch.get_num_threads())
        peer_seconds, _, _ = timed_calls(call, None, spec.min_seconds)
        value = call()
        tolerance = 1e-8 if spec.dtype == "float64" and peer != "qsim" else 1e-4
        if abs(value - z0) > tolerance:
            raise AssertionError(f"{peer} gives <Z_0> = {value:.8f} and hpcq {z0:.8f} at {circuit.n_qubits} qubits "
                                 f"(more than {tolerance} apart): not a benchmark")
        columns.update({f"{peer}_time_per_call_s": peer_seconds, f"{peer}_z0": value,
                        f"{peer}_ratio": peer_seconds / seconds})
    return columns


# --- the whole benchmark ------------------------------------------------------------------------------------

def scaling_tables(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Strong scaling t(n,1)/(r·t(n,r)) and weak scaling t(n−log2 r,1)/t(n,r) from the timed runs."""
    single = {row["n_qubits"]: row["time_per_pass_s"] for row in rows if row["ranks"] == 1}
    strong, weak = [], []
    for row in rows:
        n, r, t = row["n_qubits"], row["ranks"], row["time_per_pass_s"]
        if r == 1:
            continue
        if n in single:
            strong.append({"n_qubits": n, "ranks": r, "efficiency": single[n] / (r * t), "speedup": single[n] / t})
        local = n - (r.bit_length() - 1)
        if local in single:
            weak.append({"n_qubits": n, "local_qubits": local, "ranks": r, "efficiency": single[local] / t})
    return {"strong": strong, "weak": weak}


def run_scale_bench(spec: ScaleSpec, say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Every (qubits, ranks) run of `spec` on this MPI world; the report on world rank 0, None elsewhere."""
    from hpcq.bench.scale_launch import split_first, wait_idle

    spec.validate()
    world = mpi_world()
    if world.size < max(spec.ranks):
        raise ConfigError(f"--ranks {max(spec.ranks)} needs {max(spec.ranks)} MPI ranks but this job has "
                          f"{world.size}; start it under mpiexec -n {max(spec.ranks)} (or without a launcher, "
                          "and it starts mpiexec itself)")
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
                    say(f"  {row['time_per_pass_s'] * 1e3:.3f} ms per pass, {row['achieved_gbps']:.2f} GB/s per rank "
                        f"({row['bandwidth_fraction']:.0%} of copy {row['copy_gbps']:.2f} GB/s), load {row['load_1min']:.1f}")
            if world.comm is not None:
                wait_idle(world.comm)
    if world.rank != 0:
        return None
    if not rows:
        raise ResourceError("no run of the benchmark fit: " + "; ".join(skipped))
    return {"spec": asdict(spec), "runs": rows, "skipped": skipped, **scaling_tables(rows),
            "host": platform.node(), "mpi_world": world.size}


def write_results(report: dict[str, Any], out: Path) -> list[Path]:
    """The summary at `out` and one `bench_scale` run file per run under `out`'s stem folder."""
    from hpcq.results.schema import write_run

    spec = report["spec"]
    config = {"bench": "scale", **{k: v for k, v in spec.items() if k not in ("qubits", "ranks")},
              "circuit": "reuploading_ansatz", "observable": "Z_0", "batch": 1}
    folder = out.parent / out.stem
    paths = []
    for row in report["runs"]:
        final = {k: v for k, v in row.items() if k not in ("energy", "warmup_s")}
        paths.append(write_run(folder / f"n{row['n_qubits']:02d}_r{row['ranks']}.h5", kind="bench_scale",
                               config={**config, "n_qubits": row["n_qubits"], "ranks": row["ranks"]}, final=final,
                               timing={"warmup_s": row["warmup_s"], "total_s": row["time_per_call_s"] * row["calls"]},
                               energy=row["energy"]))
    columns = {key: [row[key] for row in report["runs"]] for key in report["runs"][0] if key != "energy"}
    tables = {"runs": columns, "skipped": report["skipped"] or [""]}
    for kind in ("strong", "weak"):
        if report[kind]:
            tables[kind] = {key: [entry[key] for entry in report[kind]] for key in report[kind][0]}
    joules = sum(row["energy"]["joules"] for row in report["runs"])
    seconds = sum(row["energy"]["duration_s"] for row in report["runs"])
    energy = {"method": report["runs"][0]["energy"]["method"], "joules": joules,
              "mean_watts": joules / seconds if seconds else 0.0, "duration_s": seconds,
              "interval_s": report["runs"][0]["energy"]["interval_s"],
              "devices": report["runs"][0]["energy"]["devices"], "notes": "sum over the timed runs"}
    final = {"runs": len(report["runs"]), "skipped": len(report["skipped"]),
             "max_qubits": max(row["n_qubits"] for row in report["runs"]),
             "run_folder": str(folder)}
    paths.insert(0, write_run(out, kind="bench_scale_summary", config={**config, "qubits": spec["qubits"],
                                                                       "ranks": spec["ranks"]},
                              final=final, energy=energy, extra={"scaling": tables}))
    return paths


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    spec = report["spec"]
    first = report["runs"][0]
    kernel = f", kernel {first['kernel']}" if first["kernel"] else ""
    table = Table(title=f"bench scale: {spec['backend']} {spec['dtype']}, ansatz L={spec['layers']} "
                        f"C={spec['connectivity']} N={spec['reuploads']}, blocks of ≤{first['fused_qubits']} "
                        f"qubits{kernel} on {report['host']}")
    for column in ("qubits", "ranks", "ms / pass", "GB/s / rank", "copy GB/s", "of copy", "comm s / call",
                   "comm MiB / call", "energy J", "load"):
        table.add_column(column, justify="right")
    peers = spec.get("peers") or ()
    table.add_column("s / call", justify="right")
    if spec.get("gradient"):
        table.add_column("fwd+grad s (ratio)", justify="right")
    for peer in peers:
        table.add_column(f"{peer} s (ratio)", justify="right")
    for row in report["runs"]:
        table.add_row(str(row["n_qubits"]), str(row["ranks"]), f"{row['time_per_pass_s'] * 1e3:.3f}",
                      f"{row['achieved_gbps']:.2f}", f"{row['copy_gbps']:.2f}", f"{row['bandwidth_fraction']:.0%}",
                      f"{row['comm_time_s']:.3f}", f"{row['comm_bytes'] / 2**20:.1f}",
                      f"{row['energy']['joules']:.1f}", f"{row['load_1min']:.1f}", f"{row['time_per_call_s']:.3f}",
                      *([f"{row['gradient_time_per_call_s']:.3f} ({row['gradient_ratio']:.1f}x)"]
                        if spec.get("gradient") else []),
                      *(f"{row[f'{p}_time_per_call_s']:.3f} ({row[f'{p}_ratio']:.1f}x)" for p in peers))
    terminal = Console().is_terminal
    console = Console(width=None if terminal else 140, highlight=False, color_system="auto" if terminal else None)
    console.print(table)
    console.print(f"energy method: {report['runs'][0]['energy']['method']}; load = 1-minute load average at the "
                  "start of each run"
                  + ("; peer ratio = peer s / hpcq s (above 1: hpcq is faster)" if peers else "")
                  + ("; fwd+grad ratio = forward+gradient s / forward s" if spec.get("gradient") else ""))
    for entry in report["strong"]:
        console.print(f"strong scaling at {entry['n_qubits']} qubits, 1 → {entry['ranks']} ranks: "
                      f"efficiency {entry['efficiency']:.0%} (speed-up {entry['speedup']:.2f}x)")
    for entry in report["weak"]:
        console.print(f"weak scaling, {entry['local_qubits']} local qubits, 1 → {entry['ranks']} ranks: "
                      f"efficiency {entry['efficiency']:.0%}")
    for line in report["skipped"]:
        console.print(f"skipped: {line}")


def bench_scale(spec: ScaleSpec, out: Path, as_json: bool = False) -> int:
    """The `hpcq bench scale` verb: relaunch under mpiexec when more ranks are asked for than this process
    has, else run, write and print (rank 0). Returns the exit status."""
    import json

    from hpcq.bench.scale_launch import relaunch

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
