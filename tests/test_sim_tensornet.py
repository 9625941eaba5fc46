"""The light-cone tensor-network backend: the paper ansatz at 100 qubits, and values and gradients equal to the
statevector backend at up to 20 qubits (paper ansatz and random circuits with every gate kind and Pauli)."""

from __future__ import annotations

import pytest
import torch

from circuit_factory import random_circuit, random_paulis
from hpcq.circuits import Circuit, encoder_circuit, reuploading_ansatz
from hpcq.errors import ConfigError, ResourceError
from hpcq.sim import expectation
from hpcq.sim.observables import parse_observables
from hpcq.sim.tensornet import build_network, light_cone, plan_network


@pytest.fixture(autouse=True)
def one_thread():
    """The contractions are many small einsums; on CI's two shared cores intra-op threads only add waiting
    (these tests check values, not speed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(circuit, batch: int, dtype=torch.float64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weights = (torch.rand(circuit.n_weights, dtype=torch.float64, generator=generator) * 6.28).to(dtype)
    features = (torch.rand(batch, circuit.n_features, dtype=torch.float64, generator=generator) * 3.14).to(dtype)
    return weights, features


def z0(n: int) -> list[str]:
    return ["I" * (n - 1) + "Z"]


def _z0_through_cnots(circuit) -> set[int]:
    """Qubits of the Z string that Z_0 becomes when pulled back through the circuit's CNOTs (Heisenberg
    picture: CNOT(c→t) maps Z_t to Z_c·Z_t); the R_Y gates are skipped, so this is exact at zero weights."""
    support = {0}
    for gate in reversed(circuit.gates):
        if gate.name == "cnot" and gate.qubits[1] in support:
            support ^= {gate.qubits[0]}
    return support


def test_paper_ansatz_at_100_qubits():
    """<Z_0> of the L=2, C=1, N=1 ansatz on 100 qubits. Exact references: at zero weights the PQCs are CNOT
    rings, so <Z_0> = Π cos(x_i) over the qubits that Z_0 reaches through them; at zero angles it is 1."""
    circuit = reuploading_ansatz(100, 2, 1, 1)
    weights, features = _inputs(circuit, batch=2)
    small = features / 10
    reached = sorted(_z0_through_cnots(circuit))
    with torch.no_grad():
        values = expectation(circuit, weights, features, z0(100), backend="tensornet")
        rings = expectation(circuit, torch.zeros_like(weights), small, z0(100), backend="tensornet")
        zero = expectation(circuit, torch.zeros_like(weights), torch.zeros_like(features), z0(100),
                           backend="tensornet")
    assert values.shape == (2, 1) and values.abs().max() <= 1 and values[0, 0] != values[1, 0]
    expected = torch.cos(small[:, reached]).prod(dim=1, keepdim=True)
    assert 10 < len(reached) < 100 and expected.min() > 1e-3  # a non-trivial, non-vanishing reference
    assert torch.allclose(rings, expected, rtol=1e-10, atol=0)
    assert torch.allclose(zero, torch.ones_like(zero), atol=1e-12)


def test_light_cone_of_the_ring_ansatz_is_the_whole_circuit_but_the_network_stays_narrow():
    """A CNOT ring is a staircase, so Z_0's light cone covers every gate; splitting the two-qubit gates keeps
    the largest intermediate independent of the width (here 2^17 entries at 40 and at 100 qubits)."""
    widths = []
    for n in (40, 100):
        circuit = reuploading_ansatz(n, 2, 1, 1)
        pauli = parse_observables(z0(n), n)[0]
        assert len(light_cone(circuit.gates, frozenset({0}))) == len(circuit.gates)
        widths.append(plan_network(build_network(circuit.gates, pauli, n), batch=1).largest)
    assert widths[0] == widths[1] <= 2**18


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_paper_ansatz_equals_statevector_at_20_qubits(dtype, tolerance):
    circuit = reuploading_ansatz(20, 2, 1, 1)
    weights, features = _inputs(circuit, batch=2, dtype=dtype, seed=1)
    labels = z0(20) + ["Z" + "I" * 19, "I" * 9 + "X" + "I" * 10]
    with torch.no_grad():
        ours = expectation(circuit, weights, features, labels, backend="tensornet")
        reference = expectation(circuit, weights, features, labels)
    assert ours.dtype == dtype
    assert (ours - reference).abs().max() < tolerance
    assert reference.abs().max() > 1e-3


@pytest.mark.parametrize("optimize, n_qubits, layers", [("greedy", 14, 2), ("sweep", 8, 1)])
def test_paper_ansatz_gradients_equal_statevector(optimize, n_qubits, layers):
    """Weights and features; the sweep path runs checkpointed row by row under autograd."""
    circuit = reuploading_ansatz(n_qubits, layers, 1, 1)
    weights, features = _inputs(circuit, batch=3, seed=2)
    upstream = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    labels = z0(n_qubits) + ["I" * (n_qubits - 7) + "Z" + "I" * 6]

    def run(backend, **options):
        w, x = weights.clone().requires_grad_(), features.clone().requires_grad_()
        values = expectation(circuit, w, x, labels, backend=backend, **options)
        return (values.detach(), *torch.autograd.grad((values * upstream).sum(), (w, x)))

    ours, reference = run("tensornet", optimize=optimize), run("statevector")
    for a, b in zip(ours, reference):
        assert (a - b).abs().max() < 1e-10
    assert reference[1].abs().max() > 1e-3 and reference[2].abs().max() > 1e-3


def test_random_circuits_with_every_gate_and_pauli_equal_statevector():
    """Complex gates (rx, rz, rzz with feature angles, y, cz) and X/Y/Z strings, values and weight gradients."""
    for seed in (4, 5):
        circuit = random_circuit(9, 70, 5, 3, seed=seed)
        weights, features = _inputs(circuit, batch=2, seed=seed)
        labels = random_paulis(9, 3, seed=seed) + ["IIIIIIIIY"]
        w1, w2 = weights.clone().requires_grad_(), weights.clone().requires_grad_()
        ours = expectation(circuit, w1, features, labels, backend="tensornet")
        reference = expectation(circuit, w2, features, labels)
        assert (ours - reference).abs().max() < 1e-10
        g1, = torch.autograd.grad(ours.sum(), w1)
        g2, = torch.autograd.grad(reference.sum(), w2)
        assert (g1 - g2).abs().max() < 1e-10


def test_short_light_cones_and_the_identity():
    circuit = Circuit(30).gate("ry", 0, weight=0).gate("cnot", [0, 1]).gate("rx", 29, feature=0)
    weights = torch.tensor([0.7], dtype=torch.float64)
    features = torch.tensor([[0.3], [1.1]], dtype=torch.float64)
    values = expectation(circuit, weights, features, ["I" * 28 + "ZI", "Z" + "I" * 29, "I" * 30],
                         backend="tensornet")
    expected = torch.tensor([[torch.cos(weights[0]), torch.cos(features[i, 0]), 1.0] for i in range(2)],
                            dtype=torch.float64)
    assert torch.allclose(values, expected, atol=1e-12)


def test_too_wide_network_stops_before_allocating():
    """Connectivity 3 at 60 qubits: the row sweep would need a 2^90-entry tensor; refused with the fix."""
    circuit = reuploading_ansatz(60, 2, 3, 1)
    weights, features = _inputs(circuit, batch=1)
    with pytest.raises(ResourceError, match=r"intermediate tensor of .*backend='statevector'"):
        expectation(circuit, weights, features, z0(60), backend="tensornet", optimize="sweep")


def test_bad_options_and_encoder_circuits_are_refused():
    circuit = reuploading_ansatz(4, 1, 1, 1)
    weights, features = _inputs(circuit, batch=1)
    with pytest.raises(ConfigError, match="contractor='cpu' is unknown"):
        expectation(circuit, weights, features, backend="tensornet", contractor="cpu")
    with pytest.raises(ConfigError, match="optimize='best' is unknown"):
        expectation(circuit, weights, features, backend="tensornet", optimize="best")
    encoder = encoder_circuit(n_features=10, n_qubits=4, layers=1, connectivity=1)
    with pytest.raises(ConfigError, match="amplitude-encoded"):
        expectation(encoder, torch.zeros(encoder.n_weights), torch.ones(1, 10), backend="tensornet")


@pytest.mark.gpu
def test_cutensornet_equals_torch_on_a_gpu():
    pytest.importorskip("cuquantum.tensornet", reason="cuquantum-python (the gpu extra) is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    circuit = reuploading_ansatz(30, 2, 1, 1)
    weights, features = _inputs(circuit, batch=2)

    def run(device: str, contractor: str) -> list[torch.Tensor]:
        w, x = weights.to(device).requires_grad_(), features.to(device).requires_grad_()
        values = expectation(circuit, w, x, z0(30), backend="tensornet", contractor=contractor)
        return [t.detach().cpu() for t in (values, *torch.autograd.grad(values.sum(), (w, x)))]

    (cpu, *cpu_grads), (gpu, *gpu_grads) = run("cpu", "torch"), run("cuda", "cutensornet")
    assert (gpu - cpu).abs().max() < 1e-10
    for ours, reference in zip(gpu_grads, cpu_grads):  # cuTensorNet's contract is differentiable for torch
        assert (ours - reference).abs().max() < 1e-8 and reference.abs().max() > 1e-6
