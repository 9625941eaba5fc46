"""A circuit compiled for the C kernels: cache-blocking stages of gate operations, built once per circuit.

A stage is a set of at most k "local" qubits and the gates (in a valid order) that act only on them; the
kernel applies a stage tile by tile, each tile being the 2**k rows that share the values of the other
qubits, so one stage costs one pass over memory however many gates it holds. Stages come from the same
greedy look-ahead grouping as gate fusion (`hpcq.sim.fusion.group_gates`), with a much larger qubit budget.
A CNOT immediately followed by an R_Y on its target (the paper's building block) becomes one operation.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from hpcq.circuits.circuit import REAL_GATES, Circuit, Gate
from hpcq.sim.fusion import group_gates

#: operation codes shared with real_gates.c (enum OP_*)
OP_CODES: dict[str, int] = {"ry": 0, "cnot": 1, "cnot_ry": 2, "cz": 3, "x": 4, "z": 5, "h": 6}
#: the kernels implement every gate that keeps amplitudes real (the circuits' real-arithmetic path)
SUPPORTED_GATES = REAL_GATES
assert SUPPORTED_GATES <= OP_CODES.keys()
#: angle sources as the kernels number them
_ANGLE_KINDS = {"weight": 0, "feature": 1, "value": 2}


@dataclass(frozen=True)
class _Slot:
    """A gate with its position, so grouping can tell equal gates apart (group_gates reads qubits and
    is_parametric only)."""

    position: int
    qubits: tuple[int, ...]
    is_parametric: bool


@dataclass(frozen=True)
class KernelProgram:
    """Int32 tables the kernels read, and where each rotation's angle comes from.

    `stages[s] = (k, offset into stage_qubits, first op, end op)`; `ops[i] = (code, a, b, rotation row)`
    with a, b local qubit indices (for cnot: control, target) and -1 where unused. Rotation row r holds the
    angle of `rotations[r]`, the r-th rotation of the circuit.
    """

    n_qubits: int
    local_qubits: int
    stages: np.ndarray
    stage_qubits: np.ndarray
    ops: np.ndarray
    rotations: tuple[Gate, ...]
    #: per rotation (kind 0 weight / 1 feature / 2 constant, index) and its constant angle, for the kernels
    angle_kinds: np.ndarray
    angle_values: np.ndarray

    @property
    def n_stages(self) -> int:
        return len(self.stages)


def unsupported_gates(circuit: Circuit) -> list[str]:
    """Names of the circuit's gates the kernels cannot run (sorted, without repeats)."""
    return sorted({g.name for g in circuit.gates} - SUPPORTED_GATES)


def _stage_qubits(slots: list[_Slot], n_qubits: int, k: int) -> list[int]:
    """The group's qubits, topped up to k with the lowest others: tiles then span whole cache lines and,
    when the stage's qubits are 0..k-1, the kernel works in place without copying the tile."""
    qubits = {q for s in slots for q in s.qubits}
    for q in range(n_qubits):
        if len(qubits) >= k:
            break
        qubits.add(q)
    return sorted(qubits)


def _stage_ops(slots: list[_Slot], gates: list[Gate], local: dict[int, int], rows: dict[int, int]) -> list[tuple]:
    ops: list[tuple] = []
    i = 0
    while i < len(slots):
        gate = gates[slots[i].position]
        after = gates[slots[i + 1].position] if i + 1 < len(slots) else None
        if gate.name == "cnot" and after is not None and after.name == "ry" and after.qubits[0] == gate.qubits[1]:
            control, target = gate.qubits
            ops.append((OP_CODES["cnot_ry"], local[control], local[target], rows[slots[i + 1].position]))
            i += 2
            continue
        a = local[gate.qubits[0]]
        b = local[gate.qubits[1]] if len(gate.qubits) > 1 else -1
        ops.append((OP_CODES[gate.name], a, b, rows.get(slots[i].position, -1)))
        i += 1
    return ops


def build_program(circuit: Circuit, local_qubits: int) -> KernelProgram:
    """Compile `circuit` (every gate in SUPPORTED_GATES) into stages of at most `local_qubits` qubits."""
    n = circuit.n_qubits
    k = max(min(local_qubits, n), min(2, n))
    gates = circuit.gates
    rotations = [g for g in gates if g.is_parametric]
    rows = {p: r for r, p in enumerate(p for p, g in enumerate(gates) if g.is_parametric)}
    slots = [_Slot(p, g.qubits, g.is_parametric) for p, g in enumerate(gates)]
    stages, stage_qubits, ops = [], [], []
    for group in group_gates(slots, n, k, max_rotations=len(gates) + 1):
        qubits = _stage_qubits(group, n, k)
        local = {q: j for j, q in enumerate(qubits)}
        first = len(ops)
        ops += _stage_ops(group, gates, local, rows)
        stages.append((len(qubits), len(stage_qubits), first, len(ops)))
        stage_qubits += qubits
    return KernelProgram(
        n_qubits=n,
        local_qubits=k,
        stages=np.asarray(stages, dtype=np.int32).reshape(-1, 4),
        stage_qubits=np.asarray(stage_qubits, dtype=np.int32),
        ops=np.asarray(ops, dtype=np.int32).reshape(-1, 4),
        rotations=tuple(rotations),
        angle_kinds=np.asarray([(_ANGLE_KINDS[g.source], g.index or 0) for g in rotations], dtype=np.int32).reshape(-1, 2),
        angle_values=np.asarray([g.value or 0.0 for g in rotations], dtype=np.float64),
    )


_PROGRAMS: "weakref.WeakKeyDictionary[Circuit, dict]" = weakref.WeakKeyDictionary()


def compile_program(circuit: Circuit, local_qubits: int) -> KernelProgram:
    """`build_program`, cached per circuit and qubit budget; rebuilt if gates were appended since."""
    per_circuit = _PROGRAMS.setdefault(circuit, {})
    key = (len(circuit.gates), local_qubits)
    if key not in per_circuit:
        per_circuit.clear()
        per_circuit[key] = build_program(circuit, local_qubits)
    return per_circuit[key]
