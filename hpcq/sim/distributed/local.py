"""Forward application of fused blocks to one rank's slice without allocating per block.

With the compiled kernels (real blocks on CPU, `hpcq.sim.kernel.dense`) every block runs in place on
whatever index bits its qubits occupy: one read and one write of the slice, the layout never changes. The
rest of this docstring is the PyTorch path (complex blocks, GPUs, no C compiler).

A fresh tensor the size of a large slice is fresh pages from the OS, and touching them costs more than the
gate itself (measured here at 2^24 float32 amplitudes: a copy into reused memory ran at 3.8 GB/s, a clone at
1.2 GB/s). So the forward pass keeps one spare slice and alternates: each block writes into the spare and
the slice it read becomes the next spare.

A block whose qubits sit on adjacent axes of the current layout is applied where it is, as a [2^i, d, rest]
batched matmul, unless fewer than `MIN_TRAILING` amplitudes follow its axes (then the matmul is slower than
moving the block first). Otherwise the layout is permuted (a copy into the spare, then one
matmul back into the old slice's memory) into the *ring layout* of the block: local qubits in increasing
cyclic order, starting with the block (`ring_layout`). Started from |0...0> in increasing order, a ring of
CNOT+R_Y blocks (the paper's ansatz) then runs in place block after block, with one such permutation each
time it reaches the last axes or a fused block spans the ring's wrap-around. Per-sample matrices keep the
statevector path.
"""

from __future__ import annotations

import torch

from hpcq.sim.fusion import Block
from hpcq.sim.kernel import KernelLibrary
from hpcq.sim.kernel.dense import apply_dense, dense_applies, dense_positions
from hpcq.sim.layout import Layout, qubit_view, reorder_matrix

#: in-place matmuls need at least this many amplitudes behind the block's axes; measured at 2^22 float32
#: amplitudes, 4-qubit blocks: in place 24 ms at 16 trailing amplitudes vs 35 ms permuting first, but 100 ms
#: vs 73 ms at 4
MIN_TRAILING = 16


def ring_layout(qubits, block) -> Layout:
    """The local qubits in increasing cyclic order with `block` in front: the block's qubits end at the one
    followed by the longest run of other qubits, which then come in order, wrapping around."""
    order = sorted(qubits)
    n = len(order)
    inside = [i for i, q in enumerate(order) if q in set(block)]
    gaps = [((inside[(j + 1) % len(inside)] - i - 1) % n, j) for j, i in enumerate(inside)]
    _, last = max(gaps)
    head = [order[inside[(last + 1 + j) % len(inside)]] for j in range(len(inside))]
    tail = [order[(inside[last] + 1 + j) % n] for j in range(n) if order[(inside[last] + 1 + j) % n] not in set(block)]
    return tuple(head + tail)


class SliceApplier:
    """Applies shared-matrix blocks to a [2**n_local, batch] slice: in place through the compiled `library`
    where it applies, else with torch, reusing one spare slice."""

    def __init__(self, blocks: list[Block], library: KernelLibrary | None = None) -> None:
        self.spare: torch.Tensor | None = None
        self.blocks = blocks
        self.library = library

    def release(self) -> None:
        """Drop the spare (before steps that allocate themselves: exchanges, measurements, the backward pass)."""
        self.spare = None

    def _spare_like(self, state: torch.Tensor) -> torch.Tensor:
        spare = self.spare
        if spare is None or spare.shape != state.shape or spare.dtype != state.dtype or spare.device != state.device:
            spare = torch.empty_like(state)
        self.spare = None
        return spare

    def apply(self, state: torch.Tensor, layout: Layout, index: int, matrix: torch.Tensor) -> tuple[torch.Tensor, Layout]:
        """Apply block `index`'s [1, d, d] matrix; `state` is consumed (its memory is reused)."""
        block = self.blocks[index]
        k = len(block.qubits)
        if dense_applies(self.library, state, k):
            apply_dense(self.library, state, dense_positions(layout, block.qubits, state.shape[-1]), matrix[0])
            return state, layout
        d = 2**k
        axes = sorted(layout.index(q) for q in block.qubits)
        first = axes[0]
        trailing = state.numel() >> (first + k)
        if axes[-1] - first + 1 == k and (first == 0 or trailing >= MIN_TRAILING):
            local = reorder_matrix(matrix, block.msb_first, layout[first:first + k])[0]
            out = self._spare_like(state)
            torch.matmul(local, state.view(2**first, d, trailing), out=out.view(2**first, d, trailing))
            self.spare = state
            return out, layout
        target = ring_layout(layout, block.qubits)
        permuted = self._spare_like(state)
        n = len(layout)
        position = {q: a for a, q in enumerate(layout)}
        order = [position[q] for q in target] + [n]
        qubit_view(permuted, n).copy_(qubit_view(state, n).permute(order))
        local = reorder_matrix(matrix, block.msb_first, target[:k])[0]
        torch.mm(local, permuted.view(d, -1), out=state.view(d, -1))
        self.spare = permuted
        return state, target
