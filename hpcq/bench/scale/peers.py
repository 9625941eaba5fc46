"""Peers for `hpcq bench scale --peer qsim,aer,qulacs`: other simulators given the identical gate list.

hpcq's circuit is bound (weights and the sample's features) into one list of (gate, qubits, angle), RY and
CNOT for the re-uploading ansatz, and each peer builds its own circuit from that list once, outside the
timing. A timed call is one forward with <Z_0> (qubit 0, Qiskit's label order "I...IZ"), so every peer is
asked the same number hpcq computes; `bench scale` refuses to report a peer whose value differs.

* qsim (qsimcirq, Google): single precision always; gates fused into blocks of at most 4 qubits
  (`max_fused_gate_size=4`, its fastest setting for these circuits), `cpu_threads` = torch's threads.
* aer (qiskit-aer): the statevector method in hpcq's precision, `max_parallel_threads` = torch's threads.
* qulacs: double precision always (the PyPI build); its OpenMP threads follow OMP_NUM_THREADS.

All three come with the `bench` extra (`pip install 'hpcq[bench]'`).
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import torch

from hpcq.bench.scale.spec import ScaleSpec
from hpcq.bench.scale.timing import timed_calls
from hpcq.circuits.qiskit_export import bound_angle
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim.precision import DTYPES

#: peer name → (module that must import, what its timed call runs)
PEERS: dict[str, tuple[str, str]] = {
    "qsim": ("qsimcirq", "qsimcirq QSimSimulator, float32, fused blocks <= 4 qubits"),
    "aer": ("qiskit_aer", "qiskit-aer AerSimulator statevector"),
    "qulacs": ("qulacs", "qulacs QuantumState, float64"),
}
SUPPORTED_GATES = ("ry", "cnot")
Gates = list[tuple[str, tuple[int, ...], float]]


def parse_peers(text: str | None) -> tuple[str, ...]:
    """"qsim,aer" → ("qsim", "aer"); refuses unknown and uninstalled peers, naming the fix."""
    peers = tuple(dict.fromkeys(p.strip() for p in (text or "").split(",") if p.strip()))
    for peer in peers:
        if peer not in PEERS:
            raise ConfigError(f"--peer {peer!r} is not a bench scale peer; use any of {', '.join(PEERS)}")
        if importlib.util.find_spec(PEERS[peer][0]) is None:
            raise MissingDependencyError(PEERS[peer][0], "bench", f"bench scale --peer {peer}")
    return peers


def bound_gates(circuit, weights: torch.Tensor, features: torch.Tensor) -> Gates:
    """The circuit's gates with sample 0's angles: the list every peer is given."""
    unsupported = sorted({g.name for g in circuit.gates} - set(SUPPORTED_GATES))
    if unsupported or circuit.amplitude_features is not None:
        raise ConfigError("bench scale peers take RY/CNOT circuits only, this one has "
                          f"{unsupported or 'amplitudes'}")
    w, x = weights.detach().double().cpu().numpy(), features.detach().double().cpu().numpy()[0]
    return [(g.name, g.qubits, bound_angle(g, w, x) if g.is_parametric else 0.0) for g in circuit.gates]


def _qsim(n: int, gates: Gates, dtype: torch.dtype, threads: int) -> Callable[[], float]:
    import cirq
    import qsimcirq

    qubits = cirq.LineQubit.range(n)
    program = cirq.Circuit(cirq.ry(angle)(qubits[q[0]]) if name == "ry"
                           else cirq.CNOT(qubits[q[0]], qubits[q[1]]) for name, q, angle in gates)
    simulator = qsimcirq.QSimSimulator(qsimcirq.QSimOptions(max_fused_gate_size=4, cpu_threads=threads))
    observable = cirq.Z(qubits[0])
    return lambda: float(simulator.simulate_expectation_values(program, observables=[observable])[0].real)


def _aer(n: int, gates: Gates, dtype: torch.dtype, threads: int) -> Callable[[], float]:
    from qiskit import QuantumCircuit, transpile
    from qiskit.quantum_info import Pauli
    from qiskit_aer import AerSimulator

    circuit = QuantumCircuit(n)
    for name, q, angle in gates:
        circuit.ry(angle, q[0]) if name == "ry" else circuit.cx(*q)
    circuit.save_expectation_value(Pauli("I" * (n - 1) + "Z"), range(n))
    simulator = AerSimulator(method="statevector", precision="single" if dtype == torch.float32 else "double",
                             max_parallel_threads=threads)
    compiled = transpile(circuit, simulator, optimization_level=0)
    return lambda: float(simulator.run(compiled).result().data()["expectation_value"])


def _qulacs(n: int, gates: Gates, dtype: torch.dtype, threads: int) -> Callable[[], float]:
    from qulacs import Observable, QuantumCircuit, QuantumState

    circuit = QuantumCircuit(n)
    for name, q, angle in gates:
        # add_RotY_gate is exp(-i θ/2 Y), Qiskit's RY (add_RY_gate has the opposite sign)
        circuit.add_RotY_gate(q[0], angle) if name == "ry" else circuit.add_CNOT_gate(*q)
    observable = Observable(n)
    observable.add_operator(1.0, "Z 0")
    state = QuantumState(n)

    def call() -> float:
        state.set_zero_state()
        circuit.update_quantum_state(state)
        return float(observable.get_expectation_value(state))

    return call


_BUILDERS = {"qsim": _qsim, "aer": _aer, "qulacs": _qulacs}


def peer_call(peer: str, n: int, gates: Gates, dtype: torch.dtype, threads: int) -> Callable[[], float]:
    """A zero-argument call returning the peer's <Z_0> for the bound gate list (built once, here)."""
    return _BUILDERS[peer](n, gates, dtype, threads)


def peer_columns(spec: ScaleSpec, circuit, weights: torch.Tensor, features: torch.Tensor, z0: float,
                 seconds: float) -> dict[str, float]:
    """Each peer's seconds per call, <Z_0> and ratio to hpcq's seconds, on the identical gate list; a peer
    whose <Z_0> differs from hpcq's stops the benchmark (a fast wrong answer is not a result)."""
    columns: dict[str, float] = {}
    gates = bound_gates(circuit, weights, features) if spec.peers else []
    for peer in spec.peers:
        call = peer_call(peer, circuit.n_qubits, gates, DTYPES[spec.dtype], torch.get_num_threads())
        peer_seconds, _, _ = timed_calls(call, None, spec.min_seconds)
        value = call()
        tolerance = 1e-8 if spec.dtype == "float64" and peer != "qsim" else 1e-4
        if abs(value - z0) > tolerance:
            raise AssertionError(f"{peer} gives <Z_0> = {value:.8f} and hpcq {z0:.8f} at {circuit.n_qubits} "
                                 f"qubits (more than {tolerance} apart): not a benchmark")
        columns.update({f"{peer}_time_per_call_s": peer_seconds, f"{peer}_z0": value,
                        f"{peer}_ratio": peer_seconds / seconds})
    return columns
