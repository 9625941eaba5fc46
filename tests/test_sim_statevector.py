"""The statevector backend against Qiskit's Statevector, and its adjoint gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp, Statevector

from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import encoder_circuit, reuploading_ansatz
from hpcq.sim import expectation


def qiskit_expectations(circuit, weights, features, labels) -> np.ndarray:
    rows = []
    for sample in features:
        state = Statevector(circuit.to_qiskit(weights, sample))
        rows.append([state.expectation_value(SparsePauliOp(label)).real for label in labels])
    return np.array(rows)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("n_qubits, seed", [(1, 0), (3, 1), (6, 2), (9, 3), (12, 4)])
def test_random_circuits_match_qiskit(n_qubits, seed, dtype, tolerance):
    circuit = random_circuit(n_qubits, n_gates=12 * n_qubits, n_weights=5, n_features=3, seed=seed)
    labels = random_paulis(n_qubits, 4, seed) + ["I" * (n_qubits - 1) + "Z"]
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(circuit.n_weights, dtype=dtype, generator=generator)
    features = torch.randn(3, circuit.n_features, dtype=dtype, generator=generator)
    ours = expectation(circuit, weights, features, labels).double().numpy()
    reference = qiskit_expectations(circuit, weights.double(), features.double(), labels)
    assert np.abs(ours - reference).max() < tolerance


def test_real_only_circuits_take_the_real_path_and_match_qiskit():
    circuit = random_circuit(8, 90, 6, 4, seed=7, names=("ry", "h", "x", "z", "cnot", "cz"))
    assert circuit.is_real
    labels = ["IIIIIIIZ", "ZIIZIIII", "IIXIIXII", "YIIIIIIY", "IIIIIYII"]  # odd #Y has <O> = 0 on real states
    weights, features = torch.randn(circuit.n_weights, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    ours = expectation(circuit, weights, features, labels).numpy()
    assert np.abs(ours - qiskit_expectations(circuit, weights, features, labels)).max() < 1e-10


def test_paper_ansatz_and_encoder_match_qiskit():
    ansatz = reuploading_ansatz(n_qubits=5, layers=2, connectivity=3, reuploads=2)
    weights = torch.randn(ansatz.n_weights, dtype=torch.float64)
    features = torch.randn(4, ansatz.n_features, dtype=torch.float64)
    ours = expectation(ansatz, weights, features, "Z").numpy()
    labels = ["I" * (4 - q) + "Z" + "I" * q for q in range(5)]
    assert np.abs(ours - qiskit_expectations(ansatz, weights, features, labels)).max() < 1e-10

    encoder = encoder_circuit(n_features=20, n_qubits=5, layers=1, connectivity=2)
    weights = torch.randn(encoder.n_weights, dtype=torch.float64)
    embeddings = torch.randn(3, 20, dtype=torch.float64)
    ours = expectation(encoder, weights, embeddings, "Z").numpy()
    assert np.abs(ours - qiskit_expectations(encoder, weights, embeddings, labels)).max() < 1e-10


def central_differences(function, tensor: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    flat = tensor.detach().clone().reshape(-1)
    grad = torch.zeros_like(flat)
    for i in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[i] = eps
        grad[i] = (function((flat + step).view_as(tensor)) - function((flat - step).view_as(tensor))) / (2 * eps)
    return grad.view_as(tensor)


@pytest.mark.parametrize("make_circuit, labels", [
    (lambda: random_circuit(5, 50, 6, 3, seed=11), ["IIIIZ", "XYZIZ", "ZZIII"]),
    (lambda: reuploading_ansatz(4, 2, 2, 2), ["IIIZ", "ZIII"]),
    (lambda: encoder_circuit(12, 4, 2, 1), "Z"),
])
def test_adjoint_gradients_equal_finite_differences(make_circuit, labels):
    circuit = make_circuit()
    generator = torch.Generator().manual_seed(3)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator, requires_grad=True)
    features = torch.randn(3, circuit.n_features, dtype=torch.float64, generator=generator, requires_grad=True)
    out = expectation(circuit, weights, features, labels)
    upstream = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    (out * upstream).sum().backward()

    def loss(w, x):
        with torch.no_grad():
            return (expectation(circuit, w, x, labels) * upstream).sum()

    assert torch.allclose(weights.grad, central_differences(lambda w: loss(w, features), weights), atol=1e-6)
    assert torch.allclose(features.grad, central_differences(lambda x: loss(weights, x), features), atol=1e-6)


def test_chunked_batches_give_the_same_values_and_gradients():
    circuit = reuploading_ansatz(6, 1, 2, 2)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    features = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    results = []
    for chunk_bytes in (1, 10**9):  # one sample per chunk, then the whole batch at once
        out = expectation(circuit, weights, features, "Z", chunk_bytes=chunk_bytes)
        grads = torch.autograd.grad(out.square().sum(), (weights, features))
        results.append((out.detach(), *grads))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-12)


def test_gradient_graph_matches_plain_autograd_through_qiskit_free_reference():
    """Fusion settings change the plan, not the answer."""
    circuit = random_circuit(6, 60, 4, 2, seed=5)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    features = torch.randn(2, 2, dtype=torch.float64)
    plans = [dict(max_fused_qubits=1, max_fused_rotations=1), dict(max_fused_qubits=4, max_fused_rotations=3),
             dict(max_fused_qubits=6, max_fused_rotations=8)]
    outs = [expectation(circuit, weights, features, ["IIIXYZ"], **plan) for plan in plans]
    grads = [torch.autograd.grad(out.sum(), weights)[0] for out in outs]
    for out, grad in zip(outs[1:], grads[1:]):
        assert torch.allclose(out, outs[0], atol=1e-12) and torch.allclose(grad, grads[0], atol=1e-10)
