"""A circuit compiled for the C kernels: cache-blocking stages of gate operations, built once per circuit.

A stage is a set of at most k "local" qubits and the gates (in a valid order) that act only on them; the
kernel applies a stage tile by tile, each tile being the 2**k rows that share the values of the other
qubits, so one stage costs one pass over memory however many gates it holds. Stages are planned greedily
with a local search over which qubits to keep local (`plan_stages`). A CNOT immediately followed by an R_Y
on its target (the paper's building block) becomes one operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcq.circuits.circuit import REAL_GATES, Circuit, CircuitCache, Gate

#: operation codes shared with real_gates.c (enum OP_*)
OP_CODES: dict[str, int] = {"ry": 0, "cnot": 1, "cnot_ry": 2, "cz": 3, "x": 4, "z": 5, "h": 6}
#: the kernels implement every gate that keeps amplitudes real (the circuits' real-arithmetic path)
SUPPORTED_GATES = REAL_GATES
assert SUPPORTED_GATES <= OP_CODES.keys()
#: angle sources as the kernels number them
_ANGLE_KINDS = {"weight": 0, "feature": 1, "value": 2}


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


def _runnable(masks: list[int], local: int, full: int) -> list[int]:
    """Positions of the gates (qubit bitmasks, in circuit order) that can run on the qubits in `local` before
    any gate that needs another qubit: a gate runs when all its qubits are local and none is blocked; a gate
    that cannot run blocks its qubits for every later gate."""
    blocked, taken = 0, []
    for position, mask in enumerate(masks):
        if mask & blocked or mask & ~local:
            blocked |= mask
            if blocked == full:
                break
        else:
            taken.append(position)
    return taken


def _first_fit(masks: list[int], n_qubits: int, k: int, always: int = 0) -> int:
    """Qubits taken in gate order while they fit in k, topped up with the lowest others (tiles then span
    whole cache lines, and a stage on qubits 0..k-1 works in place); `always` local from the start."""
    local, blocked = always, 0
    for mask in masks:
        if mask & blocked:
            blocked |= mask
        elif (local | mask).bit_count() <= k:
            local |= mask
        else:
            blocked |= mask
    for q in range(n_qubits):
        if local.bit_count() >= k:
            break
        local |= 1 << q
    return local


def plan_stages(masks: list[int], n_qubits: int, k: int, always: int = 0) -> list[tuple[int, list[int]]]:
    """Split gates (qubit bitmasks, in order) into stages of at most k local qubits: [(local mask, positions)].

    Each stage starts from the first-fit choice of qubits and then swaps one local qubit for another while
    that lets more gates run: on the paper's long-range rings this needs about 30% fewer stages (memory
    passes) than first fit alone. The qubits in the mask `always` are local in every stage.
    """
    full = (1 << n_qubits) - 1
    if k >= n_qubits:
        return [(full, list(range(len(masks))))] if masks else []
    positions = list(range(len(masks)))
    stages = []
    while positions:
        remaining = [masks[p] for p in positions]
        local = _first_fit(remaining, n_qubits, k, always)
        best = len(_runnable(remaining, local, full))
        improved = True
        while improved:  # sweeps of single swaps, each kept as soon as it helps
            improved = False
            for out in range(n_qubits):
                for into in range(n_qubits):
                    if not (local >> out & 1) or local >> into & 1 or always >> out & 1:
                        continue
                    candidate = local & ~(1 << out) | (1 << into)
                    count = len(_runnable(remaining, candidate, full))
                    if count > best:
                        local, best, improved = candidate, count, True
        taken = _runnable(remaining, local, full)
        stages.append((local, [positions[i] for i in taken]))
        taken_set = set(taken)
        positions = [p for i, p in enumerate(positions) if i not in taken_set]
    return stages


def _stage_ops(stage: list[int], gates: list[Gate], local: dict[int, int], rows: dict[int, int]) -> list[tuple]:
    """The stage's gates as kernel operations; CNOT then R_Y on its target becomes one operation."""
    ops: list[tuple] = []
    i = 0
    while i < len(stage):
        gate = gates[stage[i]]
        after = gates[stage[i + 1]] if i + 1 < len(stage) else None
        if gate.name == "cnot" and after is not None and after.name == "ry" and after.qubits[0] == gate.qubits[1]:
            control, target = gate.qubits
            ops.append((OP_CODES["cnot_ry"], local[control], local[target], rows[stage[i + 1]]))
            i += 2
            continue
        a = local[gate.qubits[0]]
        b = local[gate.qubits[1]] if len(gate.qubits) > 1 else -1
        ops.append((OP_CODES[gate.name], a, b, rows.get(stage[i], -1)))
        i += 1
    return ops


def build_program(circuit: Circuit, local_qubits: int) -> KernelProgram:
    """Compile `circuit` (every gate in SUPPORTED_GATES) into stages of at most `local_qubits` qubits."""
    n = circuit.n_qubits
    k = max(min(local_qubits, n), min(2, n))
    gates = circuit.gates
    rotations = [g for g in gates if g.is_parametric]
    rows = {p: r for r, p in enumerate(p for p, g in enumerate(gates) if g.is_parametric)}
    masks = [sum(1 << q for q in g.qubits) for g in gates]
    stages, stage_qubits, ops = [], [], []
    for local_mask, stage in plan_stages(masks, n, k):
        qubits = [q for q in range(n) if local_mask >> q & 1]
        local = {q: j for j, q in enumerate(qubits)}
        first = len(ops)
        ops += _stage_ops(stage, gates, local, rows)
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


_PROGRAMS: CircuitCache[KernelProgram] = CircuitCache()


def compile_program(circuit: Circuit, local_qubits: int) -> KernelProgram:
    """`build_program`, cached per circuit and qubit budget; rebuilt if the circuit changed since."""
    return _PROGRAMS.get(circuit, local_qubits, lambda: build_program(circuit, local_qubits))
