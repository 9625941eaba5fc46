"""Memory estimates made before any allocation, so an oversized run stops with advice, not an OOM kill."""

from __future__ import annotations

import psutil
import torch

from hpcq.errors import ResourceError

#: state vectors alive at the peak of forward+adjoint: ψ, λ, a permuted copy and a matmul output
STATES_WITH_GRADIENT = 5
STATES_FORWARD_ONLY = 3


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def amplitude_bytes(dtype: torch.dtype, complex_path: bool) -> int:
    real_bytes = torch.finfo(dtype).bits // 8
    return real_bytes * (2 if complex_path else 1)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def check_statevector_fits(
    n_qubits: int, batch: int, dtype: torch.dtype, complex_path: bool, device: torch.device, gradient: bool,
    states_alive: int | None = None,
) -> int:
    """Return the bytes the run needs, or raise ResourceError naming the largest run that would fit."""
    per_amplitude = amplitude_bytes(dtype, complex_path)
    states = states_alive or (STATES_WITH_GRADIENT if gradient else STATES_FORWARD_ONLY)
    per_sample = states * per_amplitude * 2**n_qubits
    needed = per_sample * batch
    available = available_bytes(device)
    if needed <= 0.9 * available:
        return needed
    fit_batch = int(0.9 * available // per_sample)
    fit_qubits = n_qubits
    while fit_qubits > 0 and states * per_amplitude * 2**fit_qubits * batch > 0.9 * available:
        fit_qubits -= 1
    kind = ("complex" if complex_path else "real") + str(torch.finfo(dtype).bits)
    raise ResourceError(
        f"a {n_qubits}-qubit state vector ({kind}) for a batch of {batch} needs about {format_bytes(needed)} "
        f"({states} state copies for {'forward+gradient' if gradient else 'forward'}), but {device} has "
        f"{format_bytes(available)} available. Fix: use batch <= {fit_batch} at {n_qubits} qubits, "
        f"or <= {fit_qubits} qubits at batch {batch}, or the 'distributed' backend across MPI ranks."
    )
