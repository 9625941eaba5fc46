"""Circuit descriptions: gates on qubits with angles from weights, features or constants; the paper's ansatz."""

from hpcq.circuits.ansatz import append_pqc, encoder_circuit, pqc_weight_count, reuploading_ansatz
from hpcq.circuits.circuit import GATE_ARITY, Circuit, CircuitCache, Gate

__all__ = [
    "Circuit", "CircuitCache", "Gate", "GATE_ARITY", "reuploading_ansatz", "encoder_circuit", "append_pqc", "pqc_weight_count",
]
