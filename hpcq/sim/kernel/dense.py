"""Fused blocks applied in place to one state vector: the distributed backend's rank slices.

`hpcq_dense_<prec>` (dense_impl.h) applies a real 2^k × 2^k matrix to any k index bits of a vector with
SIMD over consecutive amplitudes: one read and one write of the slice per block and no layout copies, where
the PyTorch path needs a permutation copy whenever the block's qubits are not adjacent.
`hpcq_dense_adjoint_<prec>` (dense_adjoint_impl.h) is its backward step: it un-applies a stage of blocks from
ψ and λ and reduces each dL/dM over the amplitudes, in one pass over both states.
"""

from __future__ import annotations

import ctypes

import torch

from hpcq.sim.kernel.library import KernelLibrary

_PRECISION = {torch.float32: "f32", torch.float64: "f64"}
#: a stage's tile of ψ, and its tile of λ, take at most this much: both stay in a 512 KiB L2 while every block
#: of the stage runs on them
STAGE_BYTES = 64 * 2**10


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


def stage_fits(bits: set[int], n_bits: int, dtype: torch.dtype) -> bool:
    """Whether blocks on the index bits `bits` of a 2**n_bits state can be un-applied as one stage: with the
    bits of a 64-byte cache line, a tile of at most STAGE_BYTES (any state that small is one tile)."""
    element = torch.finfo(dtype).bits // 8
    limit = (STAGE_BYTES // element).bit_length() - 1
    return n_bits <= limit or len(bits | set(range((64 // element).bit_length() - 1))) <= limit


def unapply_dense(library: KernelLibrary, psi: torch.Tensor, lam: torch.Tensor,
                  blocks: list[tuple[list[int], torch.Tensor]],
                  threads: int | None = None) -> list[torch.Tensor]:
    """The adjoint of `apply_dense` for a stage of blocks (positions, matrix), un-applied in the order given:
    ψ ← Mᵀψ and λ ← Mᵀλ in place for each (M is real and orthogonal, so ψ becomes the block's input), one
    pass over ψ and λ for the whole stage. Returns each block's dL/dM = Σ λ_out ⊗ ψ_in over the amplitudes
    ([2^k, 2^k] float64, indexed like M)."""
    if (lam.dtype != psi.dtype or lam.shape != psi.shape or not lam.is_contiguous()
            or lam.data_ptr() % library.vector_bytes):
        raise ValueError("the adjoint kernel needs λ shaped, typed and aligned like ψ")
    positions = [p for block_positions, _ in blocks for p in block_positions]
    widths = (ctypes.c_int32 * len(blocks))(*(len(block_positions) for block_positions, _ in blocks))
    matrices = torch.cat([m.to(psi.dtype).reshape(-1) for _, m in blocks])
    grads = torch.empty(matrices.numel(), dtype=torch.float64)
    status = library.function("dense_adjoint", _PRECISION[psi.dtype])(
        psi.numel().bit_length() - 1, ctypes.c_void_p(psi.data_ptr()), ctypes.c_void_p(lam.data_ptr()),
        len(blocks), widths, (ctypes.c_int32 * len(positions))(*positions),
        ctypes.c_void_p(matrices.data_ptr()), ctypes.c_void_p(grads.data_ptr()),
        threads or torch.get_num_threads())
    _check(status, "dense adjoint kernel", positions, psi)
    dims = [2 ** len(block_positions) for block_positions, _ in blocks]
    return [g.view(d, d) for g, d in zip(grads.split([d * d for d in dims]), dims)]


def _check(status: int, kernel: str, positions: list[int], state: torch.Tensor) -> None:
    if status == -1:
        raise MemoryError(f"the {kernel} could not allocate its coefficient table")
    if status != 0:
        raise ValueError(f"the {kernel} refused positions {positions} for a state of {state.numel()} "
                         "amplitudes")
