"""Memory estimates made before any allocation, so an oversized run stops with advice, not an OOM kill."""

from __future__ import annotations

import math
import mmap

import psutil
import torch

from hpcq.errors import ResourceError

#: state vectors alive at the peak of forward+adjoint: ψ, λ, a permuted copy and a matmul output
STATES_WITH_GRADIENT = 5
STATES_FORWARD_ONLY = 3


#: CPU states at least this large get transparent huge pages (`zero_state`): one huge page
HUGE_PAGE_BYTES = 2 * 2**20


def zero_state(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zero tensor for a state vector. On the CPU, from HUGE_PAGE_BYTES on, its memory is an anonymous
    mapping that asks Linux for transparent huge pages (madvise MADV_HUGEPAGE; most systems grant them only
    on request): a fresh tensor's memory is mapped page by page on first touch, which for 64 MiB of 4 KiB
    pages took 35 ms where the zero fill itself takes 5 (one thread, 2-core EPYC), and 7 ms with 2 MiB pages;
    anonymous memory also comes zeroed, so there is no fill pass. Freed with the tensor, like any other."""
    numel = math.prod(shape)
    size = numel * dtype.itemsize
    if device.type != "cpu" or size < HUGE_PAGE_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.zeros(shape, dtype=dtype, device=device)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buffer, dtype=dtype).view(shape)  # the tensor keeps the mapping alive


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
    budget = 0.9 * available
    kind = ("complex" if complex_path else "real") + str(torch.finfo(dtype).bits)
    what = (f"a {n_qubits}-qubit state vector ({kind}) for a batch of {batch} needs about {format_bytes(needed)} "
            f"({states} state copies for {'forward+gradient' if gradient else 'forward'}), but {device} has "
            f"{format_bytes(available)} available")
    fit_batch = int(budget // per_sample)
    if fit_batch >= 1:
        fit_qubits = _fitting_qubits(states * per_amplitude * batch, budget)
        fewer = f", or <= {fit_qubits} qubits at batch {batch}" if fit_qubits >= 1 else ""
        raise ResourceError(f"{what}. Fix: use batch <= {fit_batch} at {n_qubits} qubits{fewer}, or the "
                            f"'distributed' backend across MPI ranks.")
    # Not even one sample fits: a smaller batch cannot help, only more memory or another method.
    ranks_log2 = max(1, math.ceil(math.log2(per_sample / budget)))
    raise ResourceError(
        f"{what}: the circuit is too large for this memory even at batch 1 ({format_bytes(per_sample)} per "
        f"sample). Fix: the 'distributed' backend splits the state over MPI ranks (at least 2^{ranks_log2} ranks "
        f"with this much memory each), or the 'tensornet' backend contracts each observable without the full "
        f"state; here at most {_fitting_qubits(states * per_amplitude, budget)} qubits fit."
    )


def _fitting_qubits(bytes_per_amplitude: int, budget: float) -> int:
    """The most qubits whose 2**n amplitudes of `bytes_per_amplitude` fit in `budget` bytes (0 if none do)."""
    return max(0, math.floor(math.log2(budget / bytes_per_amplitude))) if budget >= bytes_per_amplitude else 0
