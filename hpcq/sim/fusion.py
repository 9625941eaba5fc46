"""Gate fusion: group consecutive gates into blocks of at most `max_qubits` qubits.

A fused block is applied as one dense matmul over the state, so a block of g gates costs one memory pass
instead of g. Its matrix is a sum over the 2**m sign patterns of its m rotations,
U = Σ_s (Π_j t_j(s_j)) · C_s with t_j(0) = cos(θ_j/2), t_j(1) = sin(θ_j/2), so building every block matrix
for a new set of angles is one small tensor contraction (and autograd differentiates it for free).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpcq.circuits.circuit import Circuit, Gate
from hpcq.sim.gates import FIXED_GATES, embed, rotation_terms


@dataclass(frozen=True)
class Block:
    """A fused block: `qubits[j]` is bit j of the block's local index; `terms` is [2**m, 2**k, 2**k]."""

    qubits: tuple[int, ...]
    rotations: tuple[Gate, ...]
    terms: np.ndarray
    #: `terms` converted to torch, per (dtype, device); filled by the simulator
    tensors: dict = field(default_factory=dict, compare=False, repr=False)
    #: the gates the block fuses, in the order they apply (`rotations` are its parametric ones, in order): the
    #: compiled adjoint un-applies them one by one
    gates: tuple[Gate, ...] = field(default=(), compare=False, repr=False)

    @property
    def per_sample(self) -> bool:
        """True when some angle comes from the features, so each sample has its own matrix."""
        return any(g.source == "feature" for g in self.rotations)

    @property
    def is_real(self) -> bool:
        return not np.iscomplexobj(self.terms)

    @property
    def msb_first(self) -> tuple[int, ...]:
        """The block's qubits from the most significant bit of its local index down: the order its matrix
        expects them in when they lead a state's layout (`hpcq.sim.layout`)."""
        return tuple(reversed(self.qubits))


def group_gates(gates: list[Gate], n_qubits: int, max_qubits: int, max_rotations: int) -> list[list[Gate]]:
    """Greedy fusion with look-ahead: a later gate joins the open block when it commutes with every gate
    skipped so far (disjoint qubits) and the block stays within `max_qubits` and `max_rotations`."""
    remaining = list(gates)
    groups: list[list[Gate]] = []
    while remaining:
        first = remaining[0]
        members, taken = [first], {0}
        qubits = set(first.qubits)
        rotations = int(first.is_parametric)
        blocked: set[int] = set()
        for position in range(1, len(remaining)):
            gate = remaining[position]
            gate_qubits = set(gate.qubits)
            if gate_qubits & blocked:
                blocked |= gate_qubits
            elif len(qubits | gate_qubits) <= max_qubits and rotations + gate.is_parametric <= max_rotations:
                members.append(gate)
                taken.add(position)
                qubits |= gate_qubits
                rotations += gate.is_parametric
            else:
                blocked |= gate_qubits
            if len(blocked) == n_qubits:  # nothing later can move past the skipped gates
                break
        groups.append(members)
        remaining = [g for i, g in enumerate(remaining) if i not in taken]
    return groups


def block_from_gates(gates: list[Gate]) -> Block:
    """Expand a gate group into its 2**m constant term matrices (m = number of rotations)."""
    qubits = tuple(sorted({q for g in gates for q in g.qubits}))
    local = {q: i for i, q in enumerate(qubits)}
    k = len(qubits)
    terms = [np.eye(2**k, dtype=complex)]
    rotations = []
    for gate in gates:
        positions = tuple(local[q] for q in gate.qubits)
        if gate.is_parametric:
            cos_term, sin_term = (embed(t, positions, k) for t in rotation_terms(gate.name))
            terms = [cos_term @ t for t in terms] + [sin_term @ t for t in terms]
            rotations.append(gate)
        else:
            fixed = embed(FIXED_GATES[gate.name], positions, k)
            terms = [fixed @ t for t in terms]
    stacked = np.stack(terms)
    if np.abs(stacked.imag).max() == 0:
        stacked = stacked.real.copy()
    return Block(qubits, tuple(rotations), stacked, gates=tuple(gates))


def fuse(circuit: Circuit, max_qubits: int, max_rotations: int) -> list[Block]:
    """The circuit as a list of fused blocks, in application order (widths: `hpcq.sim.compile`)."""
    groups = group_gates(circuit.gates, circuit.n_qubits, max_qubits, max_rotations)
    return [block_from_gates(group) for group in groups]
