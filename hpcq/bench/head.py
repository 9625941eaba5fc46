"""`hpcq bench head`: forward+gradient throughput of the paper's ansatz, side by side with a peer.

Both sides run the same circuit on the same weights and features in one process; their outputs are compared
so a fast wrong answer cannot pass as a speed-up.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from hpcq.circuits import reuploading_ansatz
from hpcq.errors import ConfigError
from hpcq.sim.precision import dtype_named


@dataclass(frozen=True)
class HeadBenchSpec:
    qubits: int
    layers: int
    connectivity: int
    reuploads: int
    batch: int
    dtype: str = "float32"
    device: str = "cpu"
    backend: str = "statevector"


def time_calls(step: Callable[[], object], min_seconds: float) -> tuple[float, int]:
    """Seconds per call after one warm-up call, repeating until `min_seconds` have passed."""
    step()
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls, calls


def _hpcq_step(spec: HeadBenchSpec, weights: torch.Tensor, features: torch.Tensor):
    from hpcq.sim import expectation

    circuit = reuploading_ansatz(spec.qubits, spec.layers, spec.connectivity, spec.reuploads)
    observable = ["I" * (spec.qubits - 1) + "Z"]

    def step() -> torch.Tensor:
        w = weights.detach().requires_grad_(True)
        x = features.detach().requires_grad_(True)
        out = expectation(circuit, w, x, observable, backend=spec.backend)[:, 0]
        out.sum().backward()
        if w.device.type == "cuda":
            torch.cuda.synchronize()
        return out.detach()

    return step


def run_head_bench(spec: HeadBenchSpec, peer: str | None = None, min_seconds: float = 2.0,
                   progress: bool = True) -> dict:
    """Measure samples/s for hpcq (and the peer); return one JSON-ready report."""
    dtype = dtype_named(spec.dtype)
    if peer not in (None, "pennylane"):
        raise ConfigError(f"--peer {peer!r} is not supported; use --peer pennylane")
    circuit = reuploading_ansatz(spec.qubits, spec.layers, spec.connectivity, spec.reuploads)
    generator = torch.Generator().manual_seed(0)
    weights = (torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6.28).to(dtype)
    features = (torch.rand(spec.batch, circuit.n_features, generator=generator, dtype=torch.float64) * 3.14).to(dtype)
    ours = _hpcq_step(spec, weights.to(spec.device), features.to(spec.device))
    say = print if progress else (lambda *_, **__: None)
    say(f"timing hpcq {spec.backend} at Q={spec.qubits}, batch {spec.batch} ...", flush=True)
    seconds, calls = time_calls(ours, min_seconds)
    report = {
        **asdict(spec),
        "gates": len(circuit.gates),
        "n_weights": circuit.n_weights,
        "seconds_per_call": seconds,
        "calls": calls,
        "samples_per_s": spec.batch / seconds,
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
    }
    if peer == "pennylane":
        from hpcq.bench.peer_pennylane import pennylane_step

        peer_step_fn = pennylane_step(spec.qubits, spec.layers, spec.connectivity, spec.reuploads, dtype)
        say("timing PennyLane lightning.qubit (adjoint, device_vjp) ...", flush=True)
        peer_seconds, peer_calls = time_calls(lambda: peer_step_fn(weights, features), min_seconds)
        difference = (ours().cpu().double() - peer_step_fn(weights, features).double()).abs().max().item()
        tolerance = 1e-3 if dtype == torch.float32 else 1e-8
        if difference > tolerance:
            raise AssertionError(f"hpcq and PennyLane disagree by {difference:.2e} (> {tolerance}); not a benchmark")
        report.update({
            "peer": "pennylane lightning.qubit",
            "peer_seconds_per_call": peer_seconds,
            "peer_calls": peer_calls,
            "peer_samples_per_s": spec.batch / peer_seconds,
            "ratio": (spec.batch / seconds) / (spec.batch / peer_seconds),
            "max_abs_difference": difference,
        })
    return report


def render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench head: Q={report['qubits']} L={report['layers']} C={report['connectivity']} "
                        f"N={report['reuploads']} batch={report['batch']} {report['dtype']} ({report['gates']} gates)")
    table.add_column("simulator")
    table.add_column("samples/s (forward+gradient)", justify="right")
    table.add_column("s per call", justify="right")
    table.add_row(f"hpcq {report['backend']} ({report['device']})", f"{report['samples_per_s']:.1f}",
                  f"{report['seconds_per_call']:.4f}")
    if "peer" in report:
        table.add_row(report["peer"], f"{report['peer_samples_per_s']:.1f}", f"{report['peer_seconds_per_call']:.4f}")
    Console().print(table)
    if "ratio" in report:
        print(f"ratio hpcq / peer: {report['ratio']:.1f}x   (outputs agree within {report['max_abs_difference']:.1e})")
