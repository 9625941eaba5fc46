"""The Aer reference backend agrees with the statevector backend, exactly and within shot noise."""

from __future__ import annotations

import pytest
import torch

from circuit_factory import random_circuit, random_paulis
from hpcq.errors import ConfigError
from hpcq.sim import expectation


def test_aer_exact_equals_statevector():
    circuit = random_circuit(5, 60, 4, 2, seed=21)
    labels = random_paulis(5, 3, seed=21)
    weights, features = torch.randn(circuit.n_weights, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    ours = expectation(circuit, weights, features, labels)
    aer = expectation(circuit, weights, features, labels, backend="aer")
    assert torch.allclose(ours, aer, atol=1e-10)


def test_aer_shots_are_within_five_standard_errors():
    circuit = random_circuit(4, 30, 3, 1, seed=22)
    labels = ["IIIZ", "XIZY", "ZZII"]
    weights, features = torch.randn(circuit.n_weights, dtype=torch.float64), torch.randn(2, 1, dtype=torch.float64)
    exact = expectation(circuit, weights, features, labels)
    shots = 4000
    sampled = expectation(circuit, weights, features, labels, backend="aer", shots=shots, seed=5)
    standard_error = torch.sqrt((1 - exact**2).clamp_min(1e-12) / shots)
    assert ((sampled - exact).abs() <= 5 * standard_error + 1e-12).all()


def test_aer_refuses_to_pretend_it_has_gradients():
    circuit = random_circuit(2, 5, 1, 0, seed=1)
    with pytest.raises(ConfigError, match="without gradients"):
        expectation(circuit, torch.zeros(1, requires_grad=True), None, ["IZ"], backend="aer")
