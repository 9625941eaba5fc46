"""Finite shots: the estimate converges to the exact <Z> as 1/sqrt(shots), is unbiased, and passes the exact
gradient straight through."""

import numpy as np
import pytest
import torch

from hpcq.circuits import reuploading_ansatz
from hpcq.errors import ConfigError
from hpcq.sim import expectation
from hpcq.sim.shots import estimate_expectation

SHOTS = [16, 64, 256, 1024, 4096, 16384]
REPEATS = 2000


@pytest.fixture(scope="module")
def circuit_and_inputs():
    torch.manual_seed(0)
    circuit = reuploading_ansatz(4, 2, 2, 2)
    weights = torch.rand(circuit.n_weights, dtype=torch.float64) * 6 - 3
    features = torch.rand(1, 4, dtype=torch.float64) * 3
    return circuit, weights, features


def test_error_shrinks_as_one_over_sqrt_shots(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    exact = expectation(circuit, weights, features, "Z")  # [1, 4] <Z_i>, away from ±1
    assert exact.abs().max() < 0.95
    generator = torch.Generator().manual_seed(1)
    rms = []
    for shots in SHOTS:  # REPEATS independent k-shot estimates of the same circuit, as a QPU would return
        draws = estimate_expectation(circuit, weights, features.expand(REPEATS, -1), "Z", shots=shots,
                                     generator=generator)
        rms.append(((draws - exact) ** 2).mean().sqrt().item())
    slope = np.polyfit(np.log(SHOTS), np.log(rms), 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.05)
    expected = ((1 - exact**2).mean().item() / np.array(SHOTS)) ** 0.5  # binomial standard error
    assert np.allclose(rms, expected, rtol=0.1)


def test_estimate_is_unbiased(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    exact = expectation(circuit, weights, features, "Z")
    torch.manual_seed(2)
    draws = estimate_expectation(circuit, weights, features.expand(3000, -1), "Z", shots=100)
    standard_error = ((1 - exact**2) / 100 / 3000).sqrt()
    assert torch.all((draws.mean(0) - exact).abs() < 4 * standard_error)


def test_gradient_is_the_exact_one(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    grads = []
    for shots in (None, 50):
        w = weights.clone().requires_grad_(True)
        estimate_expectation(circuit, w, features, ["IIIZ", "ZZII"], shots=shots).sum().backward()
        grads.append(w.grad)
    assert torch.allclose(grads[0], grads[1]) and grads[0].abs().sum() > 0


@pytest.mark.parametrize("shots", [0, -3, 2.5, True])
def test_bad_shot_counts_are_rejected(shots, circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    with pytest.raises(ConfigError, match="shots"):
        estimate_expectation(circuit, weights, features, "Z", shots=shots)
