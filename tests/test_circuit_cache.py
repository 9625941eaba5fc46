"""What backends derive from a circuit (`CircuitCache`: compiled blocks, kernel programs, contraction plans,
noisy copies) follows the circuit: a circuit changed since, even one with as many gates as before, is never
served a stale value; values go with their circuit, and the settings kept per circuit are bounded."""

from __future__ import annotations

import gc

import pytest

from hpcq.circuits import Circuit, CircuitCache
from hpcq.circuits.circuit import Gate
from hpcq.sim.noise import NoiseSpec, _cached_slots
from hpcq.sim.compile import compile_circuit


def test_a_changed_circuit_of_equal_length_is_not_served_a_stale_entry() -> None:
    """encode_amplitudes changes an empty circuit without adding a gate: a cache keyed on the gate count (as
    the four caches were) kept the noisy copy without the amplitude encoding."""
    circuit = Circuit(2)
    spec = NoiseSpec(depolarizing_1q=0.1)
    assert _cached_slots(circuit, spec).circuit.amplitude_features is None
    circuit.encode_amplitudes(4)
    assert _cached_slots(circuit, spec).circuit.amplitude_features == 4


def test_the_cache_follows_the_circuit_version() -> None:
    circuit = Circuit(2)
    cache: CircuitCache[object] = CircuitCache()
    first = cache.get(circuit, "setting", object)
    assert cache.get(circuit, "setting", object) is first
    circuit.encode_amplitudes(3)
    second = cache.get(circuit, "setting", object)
    assert second is not first
    circuit.gate("ry", [0], weight=0)
    assert cache.get(circuit, "setting", object) is not second


def test_compiled_circuit_is_rebuilt_after_a_change() -> None:
    circuit = Circuit(2).gate("ry", [0], weight=0)
    compiled = compile_circuit(circuit)
    assert compile_circuit(circuit) is compiled
    circuit.gate("cnot", [0, 1])
    assert compile_circuit(circuit) is not compiled
    assert [block.qubits for block in compile_circuit(circuit).blocks] == [(0, 1)]  # the CNOT joined


def test_gates_change_only_through_the_circuit() -> None:
    """The gate list is a tuple: an edit in place, which no cache could see, is refused."""
    circuit = Circuit(2).gate("ry", [0], weight=0)
    with pytest.raises(TypeError):
        circuit.gates[0] = Gate("rx", (0,), "weight", 0)  # type: ignore[index]
    with pytest.raises(AttributeError):
        circuit.gates = ()  # type: ignore[misc]


def test_values_go_with_their_circuit_and_settings_are_bounded() -> None:
    cache: CircuitCache[int] = CircuitCache(per_circuit=2)
    circuit = Circuit(1)
    built: list[int] = []
    for setting in (1, 2, 3, 1):
        cache.get(circuit, setting, lambda s=setting: built.append(s) or s)
    assert built == [1, 2, 3, 1]  # 1 was the oldest when 3 came, so it was built again
    del circuit
    gc.collect()
    assert len(cache._store) == 0
