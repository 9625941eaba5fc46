"""The same re-uploading ansatz on PennyLane `lightning.qubit`, the peer for `hpcq bench head`.

Adjoint differentiation with `device_vjp=True` is Lightning's fastest gradient path for one scalar loss;
precision follows the benchmark's dtype (complex64 for float32) so both sides do the same arithmetic width.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from hpcq.errors import MissingDependencyError


def pennylane_step(qubits: int, layers: int, connectivity: int, reuploads: int, dtype: torch.dtype) -> Callable:
    """Return step(weights, features) that runs forward + backward of sum(<Z_0>) and returns the outputs."""
    try:
        import pennylane as qml
    except ImportError as err:
        raise MissingDependencyError("pennylane", "bench", "the PennyLane peer benchmark") from err

    c_dtype = np.complex64 if dtype == torch.float32 else np.complex128
    device = qml.device("lightning.qubit", wires=qubits, c_dtype=c_dtype)

    def pqc(weights, offset: int) -> None:
        w = offset
        for _ in range(layers):
            for distance in range(1, connectivity + 1):
                for i in range(qubits):
                    target = (i + distance) % qubits
                    qml.CNOT(wires=[i, target])
                    qml.RY(weights[w], wires=target)
                    w += 1

    pqc1_size = qubits * connectivity * layers

    @qml.qnode(device, interface="torch", diff_method="adjoint", device_vjp=True)
    def circuit(weights, features):
        for _ in range(reuploads):
            for q in range(qubits):
                qml.RY(features[:, q], wires=q)
            pqc(weights, 0)
        pqc(weights, pqc1_size)
        return qml.expval(qml.PauliZ(0))

    def step(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        weights = weights.detach().requires_grad_(True)
        features = features.detach().requires_grad_(True)
        out = circuit(weights, features)
        out.sum().backward()
        return out.detach()

    return step
