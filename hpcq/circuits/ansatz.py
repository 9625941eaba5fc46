"""The seed paper's circuits: CNOT+R_Y rings with long-range connectivity, data re-uploading, encoders.

Building block (paper Fig. 2): CNOT(i → j) then R_Y(θ) on j. A layer holds, for each distance c = 1..C, a ring
of blocks i → (i + c) mod Q, so a layer has Q·C angles (paper Fig. 3: Q=4, C=2 → 8 per layer).
"""

from __future__ import annotations

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError


def _check_sizes(n_qubits: int, layers: int, connectivity: int, reuploads: int = 1) -> None:
    for name, value, low in (("n_qubits", n_qubits, 1), ("layers", layers, 0), ("reuploads", reuploads, 0)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}={value!r} must be an integer >= {low}")
    if not isinstance(connectivity, int) or not 1 <= connectivity <= max(1, n_qubits - 1):
        raise ConfigError(
            f"connectivity={connectivity!r} must be between 1 and n_qubits-1={n_qubits - 1} "
            "(a ring at distance c >= n_qubits would wrap onto itself)"
        )
    if n_qubits < 2 and layers > 0:
        raise ConfigError("a PQC of CNOT rings needs n_qubits >= 2")


def pqc_weight_count(n_qubits: int, layers: int, connectivity: int) -> int:
    """Angles in one PQC: one per ring block, Q per distance, C distances per layer."""
    return n_qubits * connectivity * layers


def append_pqc(circuit: Circuit, layers: int, connectivity: int, first_weight: int) -> int:
    """Append `layers` layers of CNOT+R_Y rings; weights numbered layer, then distance, then i.

    Returns the next unused weight index.
    """
    n = circuit.n_qubits
    _check_sizes(n, layers, connectivity)
    w = first_weight
    for _ in range(layers):
        for distance in range(1, connectivity + 1):
            for i in range(n):
                target = (i + distance) % n
                circuit.gate("cnot", [i, target])
                circuit.gate("ry", target, weight=w)
                w += 1
    return w


def reuploading_ansatz(n_qubits: int, layers: int, connectivity: int, reuploads: int) -> Circuit:
    """The paper's QPU module: `reuploads` × [R_Y(x_i) on every qubit, PQC1], then PQC2.

    PQC1's weights are shared by every re-uploading block (paper Fig. 1 labels every block "PQC 1 (θ_q)");
    weight order: PQC1 then PQC2. Features: one angle per qubit, x_i on qubit i.
    """
    _check_sizes(n_qubits, layers, connectivity, reuploads)
    if reuploads < 1:
        raise ConfigError(f"reuploads={reuploads} must be >= 1: the module needs at least one angle encoding")
    circuit = Circuit(n_qubits)
    pqc1_end = pqc_weight_count(n_qubits, layers, connectivity)
    for _ in range(reuploads):
        for q in range(n_qubits):
            circuit.gate("ry", q, feature=q)
        append_pqc(circuit, layers, connectivity, first_weight=0)
    append_pqc(circuit, layers, connectivity, first_weight=pqc1_end)
    return circuit


def encoder_circuit(n_features: int, n_qubits: int, layers: int, connectivity: int) -> Circuit:
    """A simulated quantum encoder (sQE): amplitude-encode the embedding, then an sPQC of CNOT+R_Y rings."""
    if not isinstance(n_features, int) or n_features < 1:
        raise ConfigError(f"n_features={n_features!r} must be a positive integer")
    if n_features > 2**n_qubits:
        raise ConfigError(
            f"{n_features} features do not fit in the amplitudes of {n_qubits} qubits; "
            f"use encoder_qubits >= {(n_features - 1).bit_length()}"
        )
    circuit = Circuit(n_qubits).encode_amplitudes(n_features)
    append_pqc(circuit, layers, connectivity, first_weight=0)
    return circuit
