"""backend="auto": the choice on injected facts (each regime), the values and gradients it gives against the
statevector backend, and that a named backend is the one used."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from hpcq.circuits import Circuit, encoder_circuit, reuploading_ansatz
from hpcq.errors import ConfigError
from hpcq.sim import auto, expectation
from hpcq.sim.auto import CallFacts, call_facts, choose_backend
from hpcq.sim.kernel import load_library

CPU = CallFacts(n_qubits=10, batch=32, needs_grad=True, accelerator="cpu", compiled_kernels=True,
                statevector_fits=True, amplitude_encoded=False)


@pytest.mark.parametrize("change, expected", [
    ({}, "statevector"),  # a training batch: the batched kernels
    ({"n_qubits": 14, "batch": 435}, "statevector"),
    ({"batch": 1, "needs_grad": False, "n_qubits": 24}, "distributed"),  # one large state: in place
    ({"batch": 1, "needs_grad": True, "n_qubits": auto.IN_PLACE_GRADIENT_QUBITS}, "distributed"),
    ({"batch": 1, "needs_grad": False, "n_qubits": auto.IN_PLACE_FORWARD_QUBITS - 1}, "statevector"),
    ({"batch": 2, "needs_grad": False, "n_qubits": 24}, "statevector"),
    ({"batch": 1, "n_qubits": 24, "compiled_kernels": False}, "statevector"),  # no in-place kernel to run
    ({"batch": 1, "n_qubits": 24, "allowed": ("statevector", "tensornet")}, "statevector"),
    ({"statevector_fits": False}, "tensornet"),  # beyond memory, from a product state
    ({"statevector_fits": False, "amplitude_encoded": True}, "statevector"),  # its own memory error says why
    ({"accelerator": "nvidia", "batch": 1, "n_qubits": 26}, "statevector"),  # torch-CUDA
    ({"accelerator": "amd", "batch": 1, "n_qubits": 26}, "statevector"),  # torch on ROCm
    ({"allowed": ("distributed",)}, "distributed"),  # options only distributed takes
])
def test_choice_per_regime(change: dict, expected: str) -> None:
    name, why = choose_backend(replace(CPU, **change))
    assert name == expected, why
    assert why


def test_options_no_candidate_takes_are_refused_in_one_line() -> None:
    circuit = reuploading_ansatz(3, 1, 1, 1)
    with pytest.raises(ConfigError, match="no_such_option"):
        expectation(circuit, torch.zeros(circuit.n_weights), torch.zeros(2, 3), no_such_option=1)


def test_facts_of_a_call() -> None:
    circuit = reuploading_ansatz(5, 1, 1, 1)
    weights = torch.zeros(circuit.n_weights, requires_grad=True)
    facts = call_facts(circuit, weights, torch.zeros(7, 5), comm=None)
    assert (facts.n_qubits, facts.batch, facts.needs_grad, facts.accelerator) == (5, 7, True, "cpu")
    assert facts.allowed == ("distributed",)
    with torch.no_grad():
        assert not call_facts(circuit, weights, torch.zeros(1, 5)).needs_grad
    assert not call_facts(circuit, weights, None, kernel="torch").compiled_kernels


def _random_circuit(n: int, gates: list[str], depth: int, seed: int) -> Circuit:
    generator = torch.Generator().manual_seed(seed)
    circuit, weight, feature = Circuit(n), 0, 0
    for _ in range(depth):
        for q in range(n):
            name = gates[int(torch.randint(len(gates), (1,), generator=generator))]
            if name in ("cnot", "cz"):
                circuit.gate(name, (q, (q + 1) % n))
            elif name in ("ry", "rx", "rz") and q % 2 and feature < n:
                circuit.gate(name, q, feature=feature)
                feature += 1
            elif name in ("ry", "rx", "rz"):
                circuit.gate(name, q, weight=weight)
                weight += 1
            else:
                circuit.gate(name, q)
    return circuit


def _values_and_gradients(circuit: Circuit, batch: int, backend: str, seed: int, grad: bool = True):
    """<Z_i> and, with `grad`, the gradients of a weighted sum of them in weights and features."""
    generator = torch.Generator().manual_seed(seed)
    weights = (torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6).requires_grad_(grad)
    features = (torch.rand(batch, circuit.n_features, generator=generator, dtype=torch.float64) * 3).requires_grad_(grad)
    values = expectation(circuit, weights, features, "Z", backend=backend)
    if not grad:
        return (values,)
    (values * torch.linspace(-1, 1, values.numel(), dtype=values.dtype).view_as(values)).sum().backward()
    return values.detach(), weights.grad, features.grad


@pytest.mark.parametrize("gates", [["ry", "cnot", "h", "cz"], ["rx", "ry", "rz", "cnot"]])
@pytest.mark.parametrize("batch", [1, 5])
def test_auto_matches_statevector_with_gradients(gates: list[str], batch: int) -> None:
    for seed in range(3):
        circuit = _random_circuit(5, gates, 3, seed)
        ours = _values_and_gradients(circuit, batch, "auto", seed)
        reference = _values_and_gradients(circuit, batch, "statevector", seed)
        for got, want in zip(ours, reference):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.skipif(load_library() is None, reason="no C compiler: the in-place kernels cannot be built")
@pytest.mark.parametrize("grad", [False, True])
def test_auto_in_place_path_matches_statevector(grad: bool, monkeypatch, caplog) -> None:
    """The in-place regime on a small circuit (thresholds lowered), so the dispatch to the distributed backend
    and its values and gradients are checked without a 20-qubit state."""
    monkeypatch.setattr(auto, "IN_PLACE_FORWARD_QUBITS", 4)
    monkeypatch.setattr(auto, "IN_PLACE_GRADIENT_QUBITS", 4)
    circuit = reuploading_ansatz(6, 2, 2, 2)
    with caplog.at_level(logging.DEBUG, logger="hpcq.sim"), torch.set_grad_enabled(grad):
        ours = _values_and_gradients(circuit, 1, "auto", 1, grad)
    assert "backend auto -> distributed" in caplog.text
    reference = _values_and_gradients(circuit, 1, "statevector", 1, grad)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_named_backend_is_the_one_used(caplog) -> None:
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights, features = torch.rand(circuit.n_weights), torch.rand(1, 4)
    with caplog.at_level(logging.DEBUG, logger="hpcq.sim"):
        expectation(circuit, weights, features, "Z", backend="statevector")
        assert "backend auto" not in caplog.text
        expectation(circuit, weights, features, "Z")
        assert "backend auto -> statevector" in caplog.text
    encoder = encoder_circuit(4, 2, 1, 1)  # amplitude-encoded: auto would take statevector, tensornet refuses
    with pytest.raises(ConfigError, match="tensornet backend cannot start from amplitude-encoded"):
        expectation(encoder, torch.rand(encoder.n_weights), torch.rand(1, 4), "Z", backend="tensornet")


def test_doctor_says_what_auto_takes_here() -> None:
    from hpcq.doctor import AUTO_SHAPES, _auto_backend

    checks = {c.name: c.detail for c in _auto_backend()}
    assert len(checks) == len(AUTO_SHAPES)
    training = checks["path: backend=auto, 14 qubits, batch 435, forward+gradient"]
    assert training.startswith("statevector: ")
    if not torch.cuda.is_available():  # on a GPU node every shape runs on the GPU
        assert checks["path: backend=auto, 34 qubits, batch 64, forward"].startswith("tensornet: ")
