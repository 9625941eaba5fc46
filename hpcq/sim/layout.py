"""Qubit layouts of a state tensor and the few kernels that move or contract it.

A state of a batch is a contiguous [batch, 2**n] tensor whose [batch, 2, ..., 2] view has one axis per qubit;
`layout[a]` names the qubit on axis a+1 (most significant first). Instead of restoring the canonical order
after every gate, the simulator only moves a block's qubits to the trailing axes when they are not already
there, so a fused block costs one matmul and at most one permuting copy.
"""

from __future__ import annotations

import torch

Layout = tuple[int, ...]


def canonical_layout(n_qubits: int) -> Layout:
    """Qubit 0 is the least significant bit, as in Qiskit."""
    return tuple(range(n_qubits - 1, -1, -1))


def permute_state(state: torch.Tensor, source: Layout, target: Layout) -> torch.Tensor:
    """Copy `state` from layout `source` into layout `target`."""
    if source == target:
        return state
    batch = state.shape[0]
    n = len(source)
    position = {q: a for a, q in enumerate(source)}
    order = [0] + [1 + position[q] for q in target]
    return state.view(batch, *([2] * n)).permute(order).reshape(batch, 2**n)


def reorder_matrix(matrix: torch.Tensor, source: Layout, target: Layout) -> torch.Tensor:
    """Re-express a [b, 2**k, 2**k] operator whose index bits follow `source` (MSB first) in `target` order."""
    if source == target:
        return matrix
    k = len(source)
    picks = [source.index(q) for q in target]
    order = [0] + [1 + p for p in picks] + [1 + k + p for p in picks]
    return matrix.reshape(matrix.shape[0], *([2] * (2 * k))).permute(order).reshape(matrix.shape)


def leading_layout(layout: Layout, block_msb_first: Layout) -> Layout:
    """`layout` with the block's qubits moved to the front; unchanged when they already are (as a set).

    The front, not the back: moving axes ahead of the rest keeps the innermost contiguous run intact, which
    makes the permuting copy close to a plain memory copy.
    """
    k = len(block_msb_first)
    if set(layout[:k]) == set(block_msb_first):
        return layout
    moving = set(block_msb_first)
    return tuple(block_msb_first) + tuple(q for q in layout if q not in moving)


def apply_matrix(state: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a [1 or batch, d, d] operator to the leading log2(d) qubits of a [batch, 2**n] state."""
    d = matrix.shape[-1]
    columns = state.view(state.shape[0], d, -1)
    # expand, not broadcast-matmul: bmm reads a stride-0 batch of one matrix without copying the state
    return torch.bmm(matrix.expand(state.shape[0], d, d), columns).view(state.shape)


def outer_on_leading(bra: torch.Tensor, ket: torch.Tensor, d: int, per_sample: bool) -> torch.Tensor:
    """G[a, b] = Σ_rest bra[a, rest] · conj(ket[b, rest]) over the leading d-dimensional index.

    This is dL/dU (PyTorch's convention for complex tensors) of ket' = U ket with upstream gradient `bra`;
    summed over the batch when U is shared by every sample.
    """
    columns_bra = bra.view(bra.shape[0], d, -1)
    columns_ket = ket.view(ket.shape[0], d, -1)
    per_sample_grad = torch.bmm(columns_bra, columns_ket.conj().transpose(1, 2))
    return per_sample_grad if per_sample else per_sample_grad.sum(0, keepdim=True)
