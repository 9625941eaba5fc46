"""The network's tensors from weights and features, built with PyTorch so the value is differentiable.

A one-qubit gate is its [2, 2] matrix; a two-qubit gate M = Σ_k B_k ⊗ A_k is split into its operator-Schmidt
pieces A (on its first qubit) and B (on its second), each [out, in, bond]. A per-sample (feature) angle puts
the batch index last on the tensor it enters (side 1 of a split gate), where it stays open to the end.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from hpcq.circuits.circuit import Gate
from hpcq.sim.gates import FIXED_GATES, rotation_terms

_PAULI_MATRICES = {"X": FIXED_GATES["x"], "Y": FIXED_GATES["y"], "Z": FIXED_GATES["z"]}


@lru_cache(maxsize=None)
def _schmidt_pieces(matrix_bytes: bytes, is_complex: bool) -> tuple[np.ndarray, np.ndarray]:
    """Operator-Schmidt split of a 4x4 two-qubit operator M = Σ_k B_k ⊗ A_k (A on the gate's first qubit).

    Returns A, B as [r, 2, 2] (out, in) arrays; r is the operator-Schmidt rank (2 for CNOT, CZ and each
    term of RZZ).
    """
    matrix = np.frombuffer(matrix_bytes, dtype=complex).reshape(4, 4)
    # index = bit(first) + 2·bit(second): M[(o1 o0), (i1 i0)] → R[(o0 i0), (o1 i1)]
    regrouped = matrix.reshape(2, 2, 2, 2).transpose(1, 3, 0, 2).reshape(4, 4)
    u, s, vh = np.linalg.svd(regrouped)
    rank = int((s > 1e-12 * s[0]).sum())
    root = np.sqrt(s[:rank])
    first = (u[:, :rank] * root).T.reshape(rank, 2, 2)
    second = (root[:, None] * vh[:rank]).reshape(rank, 2, 2)
    if not is_complex:
        first, second = first.real.copy(), second.real.copy()
    return first, second


def _pieces_of(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.ascontiguousarray(matrix, dtype=complex)
    return _schmidt_pieces(matrix.tobytes(), bool(np.abs(matrix.imag).max() > 0))


def _gate_matrix(gate: Gate, weights: torch.Tensor, features: torch.Tensor | None, dtype: torch.dtype,
                 batch: int) -> torch.Tensor:
    """A one-qubit gate's [2, 2] (or [batch, 2, 2] for feature angles) matrix, differentiable."""
    if not gate.is_parametric:
        return _constant(FIXED_GATES[gate.name], dtype, weights.device)
    cos_term, sin_term = (_constant(t, dtype, weights.device) for t in rotation_terms(gate.name))
    cos, sin = _half_angle(gate, weights, features, batch)
    return cos.to(dtype) * cos_term + sin.to(dtype) * sin_term


def _half_angle(gate: Gate, weights, features, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos θ/2, sin θ/2), shaped [batch, 1, 1] for feature angles, else scalars."""
    if gate.source == "weight":
        angle = weights[gate.index]
    elif gate.source == "feature":
        angle = features[:, gate.index].reshape(batch, 1, 1)
    else:
        angle = torch.tensor(gate.value, dtype=weights.dtype, device=weights.device)
    return torch.cos(angle / 2), torch.sin(angle / 2)


def _constant(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if not dtype.is_complex:
        array = array.real
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


def _piece(gate: Gate, side: int, weights, features, dtype, batch) -> torch.Tensor:
    """Side `side` of a split two-qubit gate as [r, 2, 2] (or [batch, r, 2, 2]); the angle goes on side 1."""
    if not gate.is_parametric:
        pieces = _pieces_of(FIXED_GATES[gate.name])
        return _constant(pieces[side], dtype, weights.device)
    cos_term, sin_term = rotation_terms(gate.name)
    cos_pieces, sin_pieces = _pieces_of(cos_term), _pieces_of(sin_term)
    if side == 0:
        return _constant(np.concatenate([cos_pieces[0], sin_pieces[0]]), dtype, weights.device)
    cos, sin = _half_angle(gate, weights, features, batch)
    if cos.dim():  # [batch, 1, 1] → [batch, 1, 1, 1] against the [r, 2, 2] pieces
        cos, sin = cos.unsqueeze(-1), sin.unsqueeze(-1)
    cos_part = cos.to(dtype) * _constant(cos_pieces[1], dtype, weights.device)
    sin_part = sin.to(dtype) * _constant(sin_pieces[1], dtype, weights.device)
    return torch.cat([cos_part, sin_part], dim=-3)


def operand(spec: tuple, gates: Sequence[Gate], weights: torch.Tensor, features: torch.Tensor | None,
            dtype: torch.dtype, batch: int, cache: dict) -> torch.Tensor:
    """The tensor of one `Network.operands` spec, axes in the network's index order; gate tensors are kept in
    `cache` by spec, so the networks of one call (one per observable) build each of them once."""
    if spec[0] == "zero":
        return torch.tensor([1, 0], dtype=dtype, device=weights.device)
    if spec[0] == "pauli":
        return _constant(_PAULI_MATRICES[spec[1]], dtype, weights.device)
    if spec in cache:
        return cache[spec]
    gate = gates[spec[1]]
    adjoint = spec[2]
    if spec[0] == "gate":
        tensor = _gate_matrix(gate, weights, features, dtype, batch)  # [(b,) out, in]
    else:
        tensor = _piece(gate, spec[3], weights, features, dtype, batch)  # [(b,) r, out, in]
    if adjoint:
        tensor = tensor.transpose(-1, -2).conj()
    if spec[0] == "piece":
        tensor = tensor.movedim(-3, -1)  # [(b,) out, in, r]
    if gate.source == "feature" and (spec[0] == "gate" or spec[3] == 1):
        tensor = tensor.movedim(0, -1)  # the batch axis goes last, as in the network's index list
    cache[spec] = tensor
    return tensor
