"""Gate matrices (Qiskit conventions, little-endian over each gate's own qubit list) and their embedding.

A rotation is R_P(θ) = cos(θ/2)·I − i·sin(θ/2)·P, so every parametric gate splits into a constant "cos" term
and a constant "sin" term; fused blocks are sums of constant matrices weighted by products of cos and sin.
"""

from __future__ import annotations

import numpy as np

_SQ2 = 1 / np.sqrt(2)
_I2 = np.eye(2, dtype=complex)
_X = np.array([[0, 1], [1, 0]], dtype=complex)
_Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
_Z = np.diag([1, -1]).astype(complex)

FIXED_GATES: dict[str, np.ndarray] = {
    "h": np.array([[1, 1], [1, -1]], dtype=complex) * _SQ2,
    "x": _X,
    "y": _Y,
    "z": _Z,
    # little-endian over [control, target]: index = control + 2*target
    "cnot": np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=complex),
    "cz": np.diag([1, 1, 1, -1]).astype(complex),
}

#: the Pauli generator P of each rotation R_P(θ) = exp(−iθP/2)
ROTATION_GENERATORS: dict[str, np.ndarray] = {
    "rx": _X,
    "ry": _Y,
    "rz": _Z,
    "rzz": np.kron(_Z, _Z),
}


def rotation_terms(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(cos term, sin term) of a rotation: R(θ) = cos(θ/2)·cos_term + sin(θ/2)·sin_term."""
    generator = ROTATION_GENERATORS[name]
    return np.eye(generator.shape[0], dtype=complex), -1j * generator


def rotation_matrix(name: str, theta: float) -> np.ndarray:
    cos_term, sin_term = rotation_terms(name)
    return np.cos(theta / 2) * cos_term + np.sin(theta / 2) * sin_term


def embed(matrix: np.ndarray, positions: tuple[int, ...], n_local: int) -> np.ndarray:
    """Embed a gate acting on local bit `positions` (little-endian) into a 2**n_local square matrix."""
    m = len(positions)
    dim = 2**n_local
    gate = matrix.reshape([2] * (2 * m))  # axes: out bits MSB..LSB of the gate, then in bits
    identity = np.eye(dim, dtype=complex).reshape([2] * (2 * n_local))
    # tensor axis a of a 2**n array holds bit n-1-a; the gate's in-axes j hold bit positions[m-1-j]
    state_axes = [n_local - 1 - positions[m - 1 - j] for j in range(m)]
    result = np.tensordot(gate, identity, axes=(list(range(m, 2 * m)), state_axes))
    # tensordot puts the gate's out-axes first; move them back where the contracted axes were
    result = np.moveaxis(result, list(range(m)), state_axes)
    return result.reshape(dim, dim)
