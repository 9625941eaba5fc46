"""Random circuits that use every gate kind and every angle source, shared by the simulator tests."""

from __future__ import annotations

import numpy as np

from hpcq.circuits import GATE_ARITY, Circuit


def random_circuit(n_qubits: int, n_gates: int, n_weights: int, n_features: int, seed: int,
                   names: tuple[str, ...] = tuple(GATE_ARITY)) -> Circuit:
    """Gates drawn uniformly from `names`; rotation angles from weights, features or constants at random."""
    rng = np.random.default_rng(seed)
    circuit = Circuit(n_qubits)
    # every weight and feature index is used at least once, so the shapes are exactly as requested
    sources = [("weight", i) for i in range(n_weights)] + [("feature", j) for j in range(n_features)]
    for position in range(n_gates):
        usable = [n for n in names if GATE_ARITY[n] <= n_qubits]
        name = usable[rng.integers(len(usable))] if position >= len(sources) else "ry"
        qubits = [int(q) for q in rng.choice(n_qubits, GATE_ARITY[name], replace=False)]
        if name in ("rx", "ry", "rz", "rzz"):
            if position < len(sources):
                source, index = sources[position]
            else:
                pick = rng.integers(3)
                source, index = (("weight", int(rng.integers(n_weights))) if pick == 0 and n_weights else
                                 ("feature", int(rng.integers(n_features))) if pick == 1 and n_features else
                                 ("value", float(rng.normal())))
            circuit.gate(name, qubits, **{source: index})
        else:
            circuit.gate(name, qubits)
    return circuit


def random_paulis(n_qubits: int, count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("IXYZ"), n_qubits)) for _ in range(count)]
