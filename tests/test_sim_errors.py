"""Bad input gets a clear error that names the value and the fix."""

from __future__ import annotations

import pytest
import torch

from hpcq.circuits import Circuit, encoder_circuit, reuploading_ansatz
from hpcq.errors import ConfigError, ResourceError
from hpcq.sim import expectation
from hpcq.sim.memory import check_statevector_fits


def test_unknown_gate_names_the_gate_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown gate 'cx'.*cnot"):
        Circuit(2).gate("cx", [0, 1])


def test_qubit_out_of_range_names_the_qubit():
    with pytest.raises(ConfigError, match=r"qubit 3 .* out of range for a 3-qubit circuit"):
        Circuit(3).gate("ry", 3, weight=0)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs exactly one of"),
    ({"weight": 0, "feature": 1}, "needs exactly one of"),
    ({"weight": -1}, "must be a non-negative integer"),
])
def test_rotation_angle_sources_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Circuit(2).gate("rx", 0, **kwargs)


def test_fixed_gate_rejects_an_angle_and_two_qubit_gate_needs_two():
    with pytest.raises(ConfigError, match="takes no angle"):
        Circuit(2).gate("h", 0, weight=0)
    with pytest.raises(ConfigError, match="acts on 2 qubit"):
        Circuit(2).gate("cnot", 0)


def test_unknown_backend_lists_the_known_ones():
    circuit = reuploading_ansatz(2, 1, 1, 1)
    with pytest.raises(ConfigError, match=r"unknown backend 'qpu'.*statevector"):
        expectation(circuit, torch.zeros(circuit.n_weights), torch.zeros(1, 2), backend="qpu")


def test_weight_and_feature_shapes_must_match_the_circuit():
    circuit = reuploading_ansatz(3, 1, 1, 1)
    with pytest.raises(ConfigError, match=r"weights has shape \(5,\) but the circuit uses 6 weights"):
        expectation(circuit, torch.zeros(5), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match=r"features has shape \(2, 4\) .* reads 3 features"):
        expectation(circuit, torch.zeros(6), torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="dtype torch.int64 is not supported"):
        expectation(circuit, torch.zeros(6, dtype=torch.long), torch.zeros(2, 3))


def test_bad_observable_shows_the_expected_form():
    circuit = reuploading_ansatz(3, 1, 1, 1)
    with pytest.raises(ConfigError, match=r"observable 'ZZ' must be a string of 3 characters.*'IIZ'"):
        expectation(circuit, torch.zeros(6), torch.zeros(1, 3), ["ZZ"])


def test_ansatz_sizes_are_checked():
    with pytest.raises(ConfigError, match="connectivity=4 must be between 1 and n_qubits-1=3"):
        reuploading_ansatz(4, 1, 4, 1)
    with pytest.raises(ConfigError, match="use encoder_qubits >= 9"):
        encoder_circuit(384, 8, 1, 1)


def test_a_state_too_large_for_memory_stops_before_allocating():
    circuit = Circuit(40).gate("ry", 0, weight=0)
    with pytest.raises(ResourceError, match=r"40-qubit state vector .* needs about .* Fix: .* qubits fit"):
        expectation(circuit, torch.zeros(1), None, ["I" * 39 + "Z"], backend="statevector")


def test_a_circuit_too_large_even_for_one_sample_names_the_alternatives_not_batch_0():
    """Issue 13: 60 qubits advised "use batch <= 0"; a smaller batch cannot help when one sample does not fit."""
    circuit = Circuit(60).gate("ry", 0, weight=0)
    with pytest.raises(ResourceError) as caught:
        expectation(circuit, torch.zeros(1), None, ["I" * 59 + "Z"], backend="statevector")
    message = str(caught.value)
    assert "batch <= 0" not in message and "<= 0 qubits" not in message
    assert "too large for this memory even at batch 1 (12288.0 PiB per sample)" in message
    assert "'distributed' backend splits the state over MPI ranks (at least 2^" in message
    assert "'tensornet' backend" in message


def test_a_batch_too_large_is_told_the_batch_that_fits():
    with pytest.raises(ResourceError, match=r"Fix: use batch <= [1-9]\d* at 16 qubits, or the 'distributed'"):
        check_statevector_fits(16, 10**12, torch.float32, False, torch.device("cpu"), gradient=True)


@pytest.mark.parametrize("backend", ["statevector", "tensornet"])
def test_nan_or_inf_inputs_are_named_instead_of_giving_nan_outputs(backend):
    """Issue 13: NaN / Inf features or weights gave NaN expectations with no word."""
    circuit = reuploading_ansatz(3, 1, 1, 1)
    weights, features = torch.rand(circuit.n_weights), torch.rand(4, circuit.n_features)
    features[2, 1] = float("nan")
    with pytest.raises(ConfigError, match=r"features holds 1 NaN/Inf value\(s\) \(the first at \[2, 1\]\)"):
        expectation(circuit, weights, features, "Z", backend=backend)
    features[2, 1] = 0.5
    weights[0] = float("inf")
    with pytest.raises(ConfigError, match=r"weights holds 1 NaN/Inf value\(s\) \(the first at \[0\]\)"):
        expectation(circuit, weights, features, "Z", backend=backend)


def test_finite_values_whose_sum_overflows_pass_the_check():
    from hpcq.sim.inputs import check_finite

    check_finite("features", torch.full((4, 4), 3e38))  # the sum is inf; every value is finite
