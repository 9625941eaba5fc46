"""Fused blocks applied in place to one state vector: the distributed backend's rank slices.

`hpcq_dense_<prec>` (dense_impl.h) applies a real 2^k × 2^k matrix to any k index bits of a vector with
SIMD over consecutive amplitudes: one read and one write of the slice per block and no layout copies, where
the PyTorch path needs a permutation copy whenever the block's qubits are not adjacent.
`hpcq_dense_adjoint_<prec>` (dense_adjoint_impl.h) is its backward step: it un-applies a block from ψ and λ
and reduces dL/dM over the amplitudes in one pass.
"""

from __future__ import annotations

import ctypes

import torch

from hpcq.sim.kernel.library import KernelLibrary

_PRECISION = {torch.float32: "f32", torch.float64: "f64"}


def dense_applies(library: KernelLibrary | None, state: torch.Tensor, k: int) -> bool:
    """Whether `apply_dense` takes this [2**n, batch] slice and a k-qubit block: a real CPU tensor, contiguous
    and vector-aligned, a power-of-two batch, k within the kernel's limit (states narrower than one SIMD vector
    take the kernel's scalar path)."""
    if library is None or state.device.type != "cpu" or state.dtype not in _PRECISION:
        return False
    batch = state.shape[-1]
    return (state.is_contiguous() and state.data_ptr() % library.vector_bytes == 0 and batch & (batch - 1) == 0
            and 1 <= k <= library.dense_max_qubits)


def dense_positions(layout: tuple[int, ...], qubits: tuple[int, ...], batch: int) -> list[int]:
    """The flat index bit of each of `qubits` in a [2**n, batch] slice whose axes follow `layout` (MSB first)."""
    n, shift = len(layout), batch.bit_length() - 1
    return [n - 1 - layout.index(q) + shift for q in qubits]


def apply_dense(library: KernelLibrary, state: torch.Tensor, positions: list[int], matrix: torch.Tensor,
                threads: int | None = None) -> None:
    """state ← M·state on the index bits `positions` (bit j of M's index acts on positions[j]), in place."""
    matrix = matrix.to(state.dtype).contiguous()
    table = (ctypes.c_int32 * len(positions))(*positions)
    status = library.function("dense", _PRECISION[state.dtype])(
        state.numel().bit_length() - 1, ctypes.c_void_p(state.data_ptr()), len(positions), table,
        ctypes.c_void_p(matrix.data_ptr()), threads or torch.get_num_threads())
    _check(status, "dense block kernel", positions, state)


def unapply_dense(library: KernelLibrary, psi: torch.Tensor, lam: torch.Tensor, positions: list[int],
                  matrix: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """The adjoint step of `apply_dense`: ψ ← Mᵀψ and λ ← Mᵀλ in place (M is real and orthogonal, so ψ becomes
    the block's input), and returns dL/dM = Σ λ_out ⊗ ψ_in over the amplitudes ([2^k, 2^k] float64, indexed
    like M)."""
    if (lam.dtype != psi.dtype or lam.shape != psi.shape or not lam.is_contiguous()
            or lam.data_ptr() % library.vector_bytes):
        raise ValueError("the adjoint kernel needs λ shaped, typed and aligned like ψ")
    matrix = matrix.to(psi.dtype).contiguous()
    table = (ctypes.c_int32 * len(positions))(*positions)
    grad = torch.empty(2 ** len(positions), 2 ** len(positions), dtype=torch.float64)
    status = library.function("dense_adjoint", _PRECISION[psi.dtype])(
        psi.numel().bit_length() - 1, ctypes.c_void_p(psi.data_ptr()), ctypes.c_void_p(lam.data_ptr()),
        len(positions), table, ctypes.c_void_p(matrix.data_ptr()), ctypes.c_void_p(grad.data_ptr()),
        threads or torch.get_num_threads())
    _check(status, "dense adjoint kernel", positions, psi)
    return grad


def _check(status: int, kernel: str, positions: list[int], state: torch.Tensor) -> None:
    if status == -1:
        raise MemoryError(f"the {kernel} could not allocate its coefficient table")
    if status != 0:
        raise ValueError(f"the {kernel} refused positions {positions} for a state of {state.numel()} "
                         "amplitudes")
