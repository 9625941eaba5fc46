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


@pytest.mark.parametrize("shots", [0, -3, 2.5, True])
def test_aer_refuses_bad_shot_counts_as_the_shot_sampler_does(shots):
    """One validator (hpcq.sim.shots.check_shots): True is not one shot, whichever backend samples."""
    circuit = random_circuit(2, 5, 1, 0, seed=1)
    with pytest.raises(ConfigError, match=f"shots={shots!r} must be a positive integer"):
        expectation(circuit, torch.zeros(circuit.n_weights), None, ["IZ"], backend="aer", shots=shots)


def test_aer_refuses_to_pretend_it_has_gradients():
    circuit = random_circuit(2, 5, 1, 0, seed=1)
    with pytest.raises(ConfigError, match="without gradients"):
        expectation(circuit, torch.zeros(1, requires_grad=True), None, ["IZ"], backend="aer")


def _aer_devices() -> tuple[str, ...]:
    from qiskit_aer import AerSimulator

    return tuple(AerSimulator().available_devices())


def test_aer_gpu_without_a_gpu_build_says_which_environment_to_use():
    if "GPU" in _aer_devices():
        pytest.skip("this qiskit-aer has a GPU: the GPU test below runs instead")
    circuit = random_circuit(3, 10, 2, 1, seed=3)
    weights, features = torch.randn(circuit.n_weights, dtype=torch.float64), torch.randn(1, 1, dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"qiskit-aer-gpu.*hpcq\[aer-gpu\]"):
        expectation(circuit, weights, features, ["IIZ"], backend="aer", device="GPU")
    with pytest.raises(ConfigError, match="device='TPU' is not an Aer device"):
        expectation(circuit, weights, features, ["IIZ"], backend="aer", device="TPU")


@pytest.mark.gpu
def test_aer_on_gpu_equals_statevector():
    if "GPU" not in _aer_devices():
        pytest.skip("qiskit-aer has no GPU here (needs qiskit-aer-gpu and an NVIDIA GPU: the aer-gpu extra)")
    circuit = random_circuit(12, 120, 6, 2, seed=23)
    labels = random_paulis(12, 3, seed=23)
    weights, features = torch.randn(circuit.n_weights, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    ours = expectation(circuit, weights, features, labels)
    aer = expectation(circuit, weights, features, labels, backend="aer", device="GPU")
    assert torch.allclose(ours, aer, atol=1e-10)
