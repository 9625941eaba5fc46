"""Noisy gates and readout: Pauli trajectories on the statevector backend against Qiskit Aer's noise model
(same rates, via `aer_noise_model`) on the same circuit, and gradients of the noisy estimate."""

import pytest
import torch

from hpcq.errors import ConfigError
from hpcq.models import QuantumHead, reuploading_circuit
from hpcq.sim import expectation
from hpcq.sim.noise import NoiseSpec, aer_noise_model, noisy_expectation, with_pauli_slots

pytest.importorskip("qiskit_aer")

OBSERVABLES = ["IIIZ", "IIZI", "ZIII", "IZZI"]
TRAJECTORIES = 4000


@pytest.fixture(scope="module")
def circuit_and_inputs():
    # One re-uploading block and no PQC2: no two 1-qubit gates meet on a qubit, so Qiskit's transpiler
    # (which the aer backend runs) has nothing to merge and the noise sits after the same gates (checked below).
    circuit = reuploading_circuit(4, 2, 2, 1, pqc2=False)
    torch.manual_seed(3)
    weights = torch.rand(circuit.n_weights, dtype=torch.float64) * 6 - 3
    features = torch.rand(1, 4, dtype=torch.float64) * 3
    return circuit, weights, features


def test_aer_transpilation_keeps_every_gate(circuit_and_inputs):
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    circuit, weights, features = circuit_and_inputs
    qc = circuit.to_qiskit(weights, features[0])
    simulator = AerSimulator(method="density_matrix", noise_model=aer_noise_model({"depolarizing_1q": 0.01}))
    assert dict(transpile(qc, simulator).count_ops()) == dict(qc.count_ops())


def test_depolarizing_trajectories_match_aer_density_matrix(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    spec = NoiseSpec(depolarizing_1q=0.03, depolarizing_2q=0.08, trajectories=TRAJECTORIES)
    torch.manual_seed(4)
    mean, stderr = noisy_expectation(circuit, weights, features, OBSERVABLES, spec, return_stderr=True)
    reference = expectation(circuit, weights, features, OBSERVABLES, backend="aer", noise_model=aer_noise_model(spec))
    ideal = expectation(circuit, weights, features, OBSERVABLES)
    assert torch.all((mean - reference).abs() < 3 * stderr)
    assert (ideal - reference).abs().max() > 10 * stderr.max()  # the noise is large enough to be seen


def test_gate_and_readout_noise_match_aer_shots(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    spec = NoiseSpec(0.02, 0.05, readout=(0.04, 0.10), trajectories=TRAJECTORIES)
    single_qubit = OBSERVABLES[:2]  # asymmetric readout is exact for one-qubit observables
    torch.manual_seed(5)
    mean, stderr = noisy_expectation(circuit, weights, features, single_qubit, spec, return_stderr=True)
    shots = 10_000
    reference = expectation(circuit, weights, features, single_qubit, backend="aer", shots=shots, seed=7,
                            noise_model=aer_noise_model(spec))
    reference_stderr = ((1 - reference**2) / shots).sqrt()
    assert torch.all((mean - reference).abs() < 3 * (stderr**2 + reference_stderr**2).sqrt())


def test_readout_alone_is_exact(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    ideal = expectation(circuit, weights, features, OBSERVABLES)
    mean, stderr = noisy_expectation(circuit, weights, features, OBSERVABLES, NoiseSpec(readout=(0.1, 0.1)),
                                     return_stderr=True)
    assert torch.allclose(mean[:, :3], 0.8 * ideal[:, :3]) and torch.allclose(mean[:, 3], 0.64 * ideal[:, 3])
    assert torch.all(stderr == 0)
    with pytest.raises(ConfigError, match="asymmetric readout"):
        noisy_expectation(circuit, weights, features, OBSERVABLES, NoiseSpec(readout=(0.1, 0.2)))


def test_slots_follow_every_gate_on_its_qubits(circuit_and_inputs):
    circuit = circuit_and_inputs[0]
    slots = with_pauli_slots(circuit, NoiseSpec(0.01, 0.02))
    one, two = sum(len(g.qubits) == 1 for g in circuit.gates), sum(len(g.qubits) == 2 for g in circuit.gates)
    assert len(slots.location_probability) == one + two
    assert len(slots.slot_location) == one + 2 * two
    assert slots.circuit.n_features == circuit.n_features + 2 * (one + 2 * two)


def test_noisy_gradient_matches_finite_differences_for_fixed_trajectories(circuit_and_inputs):
    circuit, weights, features = circuit_and_inputs
    spec = NoiseSpec(0.05, 0.1, readout=0.03, trajectories=16)

    def value(w):
        return noisy_expectation(circuit, w, features, OBSERVABLES, spec, generator=torch.Generator().manual_seed(9))

    w = weights.clone().requires_grad_(True)
    value(w).sum().backward()
    eps = 1e-6
    for i in range(0, circuit.n_weights, 3):
        step = torch.zeros_like(weights)
        step[i] = eps
        numeric = (value(weights + step).sum() - value(weights - step).sum()) / (2 * eps)
        assert w.grad[i].item() == pytest.approx(numeric.item(), abs=1e-7)


def test_noisy_head_trains():
    torch.manual_seed(0)
    head = QuantumHead(6, 3, 1, 1, 2, encoder_qubits=3, noise={"depolarizing_1q": 0.02, "depolarizing_2q": 0.05,
                                                               "readout": 0.02, "trajectories": 2},
                       dtype=torch.float64)
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.tensor([0, 1] * 4)
    torch.nn.functional.cross_entropy(head(x), y).backward()
    assert head.qpu_weights.grad.abs().sum() > 0 and torch.isfinite(head.qpu_weights.grad).all()
