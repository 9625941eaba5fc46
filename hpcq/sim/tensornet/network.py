"""The light-cone network of <0|U†OU|0> for one Pauli string O, two-qubit gates split into one-qubit pieces.

For a Pauli string O only the gates in the backward light cone of O's qubits matter (every other gate meets
its adjoint and cancels, U†U = 1), so the network is |0…0> on the light cone's qubits, its gates, O, the same
gates' adjoints and <0…0|. Every two-qubit gate is split into its operator-Schmidt pieces (CNOT = Σ_k |k><k|
⊗ X^k, rank 2; `operands.pieces_of`), so each tensor sits on one qubit ("row") and a gate adds one bond of
size 2 between its rows instead of a 4-leg tensor joining both wires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hpcq.circuits.circuit import Gate
from hpcq.sim.observables import Pauli

BATCH = -1  # index id of the batch (sample) axis: a hyperedge on every per-sample tensor and the output


def light_cone(gates: Sequence[Gate], qubits: frozenset[int]) -> list[int]:
    """Indices (in circuit order) of the gates in the backward light cone of `qubits`."""
    active = set(qubits)
    kept = []
    for index in range(len(gates) - 1, -1, -1):
        if active & set(gates[index].qubits):
            active |= set(gates[index].qubits)
            kept.append(index)
    return kept[::-1]


@dataclass(frozen=True)
class Network:
    """Tensors of <0|U_lc† O U_lc|0>: index ids per tensor, what each tensor is, and the qubit it sits on.

    Operand specs: ("zero",) | ("pauli", "X"|"Y"|"Z") | ("gate", gate index, adjoint) for one-qubit gates
    | ("piece", gate index, adjoint, side) for side 0/1 of a split two-qubit gate ([out, in, bond] axes).
    """

    inputs: tuple[tuple[int, ...], ...]
    operands: tuple[tuple, ...]
    rows: tuple[int, ...]
    output: tuple[int, ...]
    qubits: tuple[int, ...]


def build_network(gates: Sequence[Gate], pauli: Pauli, n_qubits: int) -> Network:
    """The light-cone network of `pauli`'s expectation, two-qubit gates split into one-qubit pieces."""
    support = pauli.x | pauli.y | pauli.z
    cone = light_cone(gates, frozenset(support))
    qubits = sorted(support | {q for i in cone for q in gates[i].qubits})
    fresh = iter(range(10**9))
    inputs: list[tuple[int, ...]] = []
    operands: list[tuple] = []
    rows: list[int] = []
    wire = {}
    per_sample = False

    def add(indices: tuple[int, ...], spec: tuple, row: int) -> None:
        inputs.append(indices)
        operands.append(spec)
        rows.append(row)

    for q in qubits:  # |0> kets
        wire[q] = next(fresh)
        add((wire[q],), ("zero",), q)

    def add_gate(index: int, adjoint: bool) -> None:
        nonlocal per_sample
        gate = gates[index]
        batch = (BATCH,) if gate.source == "feature" else ()
        per_sample |= bool(batch)
        if len(gate.qubits) == 1:
            (q,) = gate.qubits
            out = next(fresh)
            add((out, wire[q], *batch), ("gate", index, adjoint), q)
            wire[q] = out
            return
        bond = next(fresh)
        for side, q in enumerate(gate.qubits):  # the angle (and so the batch index) sits on side 1
            out = next(fresh)
            add((out, wire[q], bond, *(batch if side else ())), ("piece", index, adjoint, side), q)
            wire[q] = out

    for index in cone:
        add_gate(index, adjoint=False)
    for q in sorted(support):
        label = "X" if q in pauli.x else "Y" if q in pauli.y else "Z"
        out = next(fresh)
        add((out, wire[q]), ("pauli", label), q)
        wire[q] = out
    for index in reversed(cone):
        add_gate(index, adjoint=True)
    for q in qubits:  # <0| bras
        add((wire[q],), ("zero",), q)
    return Network(tuple(inputs), tuple(operands), tuple(rows), (BATCH,) if per_sample else (), tuple(qubits))
