"""Fused blocks applied in place to one state vector: the distributed backend's rank slices.

`hpcq_dense_<prec>` (dense_impl.h) applies a real 2^k × 2^k matrix to any k index bits of a vector with
SIMD over consecutive amplitudes: one read and one write of the slice per block and no layout copies, where
the PyTorch path needs a permutation copy whenever the block's qubits are not adjacent.
`hpcq_gates_adjoint_<prec>` (gates_adjoint_impl.h) is the backward step: it un-applies a stage of the blocks'
gates from ψ and λ, gate by gate, and reduces each rotation's dL/dθ over the amplitudes, in one pass over both
states (a few multiply-adds per amplitude and gate, where un-applying a fused block costs 3·2^k).
"""

from __future__ import annotations

import ctypes
import functools

import torch

from hpcq.sim.kernel.library import KernelLibrary
from hpcq.sim.kernel.program import plan_stages

_PRECISION = {torch.float32: "f32", torch.float64: "f64"}
#: operation codes of hpcq_gates_adjoint (enum GATE_* in gates_adjoint_impl.h)
GATE_MATRIX, GATE_RY, GATE_CNOT, GATE_CZ, GATE_RY_CNOT = 0, 1, 2, 3, 4
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


@functools.lru_cache(maxsize=64)
def plan_gate_stages(positions: tuple[tuple[int, ...], ...], n_bits: int,
                     dtype: torch.dtype) -> list[list[int]]:
    """Gates on these index bits of a 2**n_bits state (in the order they are un-applied) as stages for
    `unapply_gates`: each stage's gates, in order, with its bits and those of a 64-byte cache line a tile of
    at most STAGE_BYTES. Gates on disjoint bits commute, so a stage may take a gate past one that waits for
    a later stage (`hpcq.sim.kernel.program.plan_stages`, its choice of bits by local search): the paper's
    ansatz (1 layer, 1 ring, 1 upload) at 24 qubits takes 5 stages where consecutive gates took 7. Cached: a
    circuit asks for the same plan every call."""
    element = torch.finfo(dtype).bits // 8
    limit = (STAGE_BYTES // element).bit_length() - 1
    if n_bits <= limit:
        return [list(range(len(positions)))] if positions else []
    line = (1 << (64 // element).bit_length() - 1) - 1  # a tile always holds these bits
    masks = [sum(1 << p for p in bits) for bits in positions]
    return [taken for _, taken in plan_stages(masks, n_bits, limit, always=line)]


def unapply_gates(library: KernelLibrary, psi: torch.Tensor, lam: torch.Tensor,
                  ops: list[tuple[int, int, int, tuple[float, float, float, float]]],
                  threads: int | None = None) -> torch.Tensor:
    """The adjoint pass of a stage of gates, un-applied in the order given, in place: one pass over ψ and λ.
    `ops[i] = (code, bit a, bit b, 2x2 matrix row-major)`: GATE_MATRIX and GATE_RY (R_Y(θ) is
    [[c, -s], [s, c]]) on bit a, GATE_CNOT (control a, target b) and GATE_CZ (b unused for 1-qubit gates, the
    matrix for 2-qubit ones). Returns dL/dθ of each GATE_RY, 0 for the others ([len(ops)] float64)."""
    _check_pair(library, psi, lam)
    codes = torch.tensor([(code, a, b, 0) for code, a, b, _ in ops], dtype=torch.int32)
    matrices = torch.tensor([matrix for *_, matrix in ops], dtype=psi.dtype)
    grads = torch.empty(len(ops), dtype=torch.float64)
    status = library.function("gates_adjoint", _PRECISION[psi.dtype])(
        psi.numel().bit_length() - 1, ctypes.c_void_p(psi.data_ptr()), ctypes.c_void_p(lam.data_ptr()),
        len(ops), ctypes.c_void_p(codes.data_ptr()), ctypes.c_void_p(matrices.data_ptr()),
        ctypes.c_void_p(grads.data_ptr()), threads or torch.get_num_threads())
    _check(status, "gate adjoint kernel", [op[1:3] for op in ops], psi)
    return grads


def _check_pair(library: KernelLibrary, psi: torch.Tensor, lam: torch.Tensor) -> None:
    if (lam.dtype != psi.dtype or lam.shape != psi.shape or not lam.is_contiguous()
            or lam.data_ptr() % library.vector_bytes):
        raise ValueError("the adjoint kernel needs λ shaped, typed and aligned like ψ")


def _check(status: int, kernel: str, positions: list[int], state: torch.Tensor) -> None:
    if status == -1:
        raise MemoryError(f"the {kernel} could not allocate its coefficient table")
    if status != 0:
        raise ValueError(f"the {kernel} refused positions {positions} for a state of {state.numel()} "
                         "amplitudes")
