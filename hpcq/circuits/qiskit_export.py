"""Export a bound circuit to Qiskit, the reference every simulator is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from hpcq.errors import ConfigError

if TYPE_CHECKING:
    from hpcq.circuits.circuit import Circuit, Gate


def _as_vector(values, length: int, what: str) -> np.ndarray:
    array = np.zeros(0) if values is None else np.asarray(
        values.detach().cpu() if hasattr(values, "detach") else values, dtype=float
    ).reshape(-1)
    if array.shape[0] != length:
        raise ConfigError(f"{what} has {array.shape[0]} entries but the circuit uses {length}")
    return array


def bound_angle(gate: "Gate", weights: np.ndarray, features: np.ndarray) -> float:
    if gate.source == "weight":
        return float(weights[gate.index])
    if gate.source == "feature":
        return float(features[gate.index])
    return float(gate.value)


def to_qiskit(circuit: "Circuit", weights: Sequence[float] | None, features: Sequence[float] | None):
    from qiskit import QuantumCircuit

    w = _as_vector(weights, circuit.n_weights, "weights")
    x = _as_vector(features, circuit.n_features, "features")
    qc = QuantumCircuit(circuit.n_qubits)
    if circuit.amplitude_features is not None:
        from qiskit.circuit.library import StatePreparation

        amplitudes = np.zeros(2**circuit.n_qubits)
        amplitudes[: circuit.amplitude_features] = x[: circuit.amplitude_features]
        norm = np.linalg.norm(amplitudes)
        if norm == 0:
            raise ConfigError("amplitude encoding of an all-zero feature vector has no state")
        qc.append(StatePreparation(amplitudes / norm), range(circuit.n_qubits))
    for g in circuit.gates:
        if g.name == "cnot":
            qc.cx(*g.qubits)
        elif g.is_parametric:
            getattr(qc, g.name)(bound_angle(g, w, x), *g.qubits)
        else:
            getattr(qc, g.name)(*g.qubits)
    return qc
