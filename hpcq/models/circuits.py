"""The quantum head's circuits: the paper's re-uploading module with its ablation switches.

`reuploading_circuit(..., shared_pqc1=True, pqc2=True)` is exactly `hpcq.circuits.reuploading_ansatz`; the
switches give the variants the paper leaves open (a separate PQC1 per re-uploading block) and the ablations
(no PQC2).
"""

from __future__ import annotations

from hpcq.circuits import Circuit, append_pqc, pqc_weight_count
from hpcq.errors import ConfigError


def reuploading_circuit(
    n_qubits: int, layers: int, connectivity: int, reuploads: int, *, shared_pqc1: bool = True, pqc2: bool = True
) -> Circuit:
    """`reuploads` × [R_Y(x_i) on every qubit, PQC1], then PQC2 (if `pqc2`).

    Weights: PQC1 (one set shared by every block, or one set per block in block order), then PQC2.
    Features: one angle per qubit, x_i on qubit i, re-read by every block.
    """
    if not isinstance(reuploads, int) or reuploads < 1:
        raise ConfigError(f"reuploads={reuploads!r} must be an integer >= 1: the module needs one angle encoding")
    circuit = Circuit(n_qubits)
    per_pqc = pqc_weight_count(n_qubits, layers, connectivity)
    next_weight = 0
    for block in range(reuploads):
        for q in range(n_qubits):
            circuit.gate("ry", q, feature=q)
        first = 0 if shared_pqc1 else block * per_pqc
        next_weight = max(next_weight, append_pqc(circuit, layers, connectivity, first_weight=first))
    if pqc2:
        append_pqc(circuit, layers, connectivity, first_weight=next_weight)
    return circuit
