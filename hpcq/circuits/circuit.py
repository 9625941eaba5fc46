"""A circuit is an ordered list of gates on qubits whose angles come from weights, features or constants.

The description is backend-neutral: simulators compile it (fusing gates, choosing real or complex
arithmetic); `to_qiskit` binds it for one sample so Qiskit can serve as the reference. A circuit changes
only through its methods (its gates are a tuple), and each change moves `version`, so what a simulator
derived from a circuit (`CircuitCache`) is never served for a changed one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Literal, Sequence, TypeVar

from hpcq.errors import ConfigError

#: gate name → number of qubits it acts on
GATE_ARITY: dict[str, int] = {
    "rx": 1, "ry": 1, "rz": 1, "h": 1, "x": 1, "y": 1, "z": 1,
    "cnot": 2, "cz": 2, "rzz": 2,
}
PARAMETRIC_GATES = frozenset({"rx", "ry", "rz", "rzz"})
#: gates whose matrix is real for every real angle: the simulator can then stay in real arithmetic
REAL_GATES = frozenset({"ry", "h", "x", "z", "cnot", "cz"})

AngleSource = Literal["weight", "feature", "value"]


@dataclass(frozen=True)
class Gate:
    """One gate: `qubits` in order (for `cnot`: control, target); an angle source for rotations."""

    name: str
    qubits: tuple[int, ...]
    source: AngleSource | None = None
    index: int | None = None  # weight or feature index
    value: float | None = None  # constant angle

    @property
    def is_parametric(self) -> bool:
        return self.name in PARAMETRIC_GATES


class Circuit:
    """A parameterized circuit on `n_qubits` qubits (qubit 0 is the least significant bit, as in Qiskit)."""

    def __init__(self, n_qubits: int):
        if not isinstance(n_qubits, int) or n_qubits < 1:
            raise ConfigError(f"n_qubits={n_qubits!r} must be a positive integer")
        self.n_qubits = n_qubits
        self._gates: list[Gate] = []
        self._gate_tuple: tuple[Gate, ...] | None = ()
        self._version = 0
        self._n_weights = 0
        self._n_features = 0
        self.amplitude_features: int | None = None

    @property
    def gates(self) -> tuple[Gate, ...]:
        """The gates in order, as a tuple: only `gate`, `extend` and `encode_amplitudes` change a circuit."""
        if self._gate_tuple is None:  # built once per change, not on every append
            self._gate_tuple = tuple(self._gates)
        return self._gate_tuple

    @property
    def version(self) -> int:
        """A number that moves on every change of the circuit (gates or initial state)."""
        return self._version

    @property
    def n_weights(self) -> int:
        """Length of the weight vector: one past the largest weight index used."""
        return self._n_weights

    @property
    def n_features(self) -> int:
        """Length of each sample's feature vector: one past the largest feature index used."""
        return self._n_features

    @property
    def is_real(self) -> bool:
        """True when every gate keeps real amplitudes real (the paper's R_Y + CNOT ansatz is)."""
        return all(g.name in REAL_GATES for g in self.gates)

    def gate(
        self,
        name: str,
        qubits: int | Sequence[int],
        *,
        weight: int | None = None,
        feature: int | None = None,
        value: float | None = None,
    ) -> "Circuit":
        """Append a gate; a rotation's angle comes from exactly one of `weight`, `feature` or `value`."""
        name = name.lower()
        if name not in GATE_ARITY:
            raise ConfigError(f"unknown gate {name!r}; known gates: {', '.join(GATE_ARITY)}")
        qubit_tuple = (qubits,) if isinstance(qubits, int) else tuple(int(q) for q in qubits)
        if len(qubit_tuple) != GATE_ARITY[name]:
            raise ConfigError(f"gate {name!r} acts on {GATE_ARITY[name]} qubit(s), got qubits={qubit_tuple}")
        for q in qubit_tuple:
            if not 0 <= q < self.n_qubits:
                raise ConfigError(f"qubit {q} of gate {name!r} is out of range for a {self.n_qubits}-qubit circuit")
        if len(set(qubit_tuple)) != len(qubit_tuple):
            raise ConfigError(f"gate {name!r} needs distinct qubits, got {qubit_tuple}")
        given = {k: v for k, v in (("weight", weight), ("feature", feature), ("value", value)) if v is not None}
        if name in PARAMETRIC_GATES:
            if len(given) != 1:
                raise ConfigError(
                    f"rotation {name!r} needs exactly one of weight=, feature= or value=, got {sorted(given) or 'none'}"
                )
            (source, arg), = given.items()
            if source == "value":
                gate = Gate(name, qubit_tuple, "value", value=float(arg))
            elif isinstance(arg, int) and arg >= 0:
                gate = Gate(name, qubit_tuple, source, index=arg)
            else:
                raise ConfigError(f"{source} index {arg!r} of gate {name!r} must be a non-negative integer")
        elif given:
            raise ConfigError(f"gate {name!r} takes no angle, got {sorted(given)}")
        else:
            gate = Gate(name, qubit_tuple)
        self._append(gate)
        return self

    def _append(self, gate: Gate) -> None:
        if gate.source == "weight":
            self._n_weights = max(self._n_weights, gate.index + 1)
        elif gate.source == "feature":
            self._n_features = max(self._n_features, gate.index + 1)
        self._gates.append(gate)
        self._gate_tuple = None
        self._version += 1

    def encode_amplitudes(self, n_features: int) -> "Circuit":
        """Start from the L2-normalised feature vector as amplitudes (zero-padded to 2**n_qubits).

        The paper's simulated encoders load an embedding directly as a state ("the state can be directly
        loaded without explicitly constructing a quantum circuit"); only a simulator can do this, so it is a
        property of the circuit's initial state rather than a gate. Features 0..n_features-1 are the amplitudes.
        """
        if self._gates:
            raise ConfigError("encode_amplitudes() must come before any gate: it sets the initial state")
        if not isinstance(n_features, int) or not 1 <= n_features <= 2**self.n_qubits:
            raise ConfigError(
                f"amplitude encoding of {n_features!r} features needs 1 <= n_features <= 2**{self.n_qubits}; "
                f"use at least {max(1, (int(n_features) - 1).bit_length()) if isinstance(n_features, int) else '?'} qubits"
            )
        self.amplitude_features = n_features
        self._n_features = max(self._n_features, n_features)
        self._version += 1
        return self

    def extend(self, other: "Circuit") -> "Circuit":
        """Append every gate of `other` (same width), keeping its weight and feature indices."""
        if other.n_qubits != self.n_qubits:
            raise ConfigError(f"cannot extend a {self.n_qubits}-qubit circuit with a {other.n_qubits}-qubit one")
        if other.amplitude_features is not None:
            raise ConfigError("cannot append a circuit that starts with amplitude encoding")
        for g in other.gates:
            self._append(g)
        return self

    def gate_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for g in self.gates:
            counts[g.name] = counts.get(g.name, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self.gates)

    def __repr__(self) -> str:
        return (f"Circuit(n_qubits={self.n_qubits}, gates={len(self.gates)}, "
                f"n_weights={self.n_weights}, n_features={self.n_features})")

    def to_qiskit(self, weights: Sequence[float] | None = None, features: Sequence[float] | None = None):
        """Bind one sample and return a `qiskit.QuantumCircuit` (qubit i is Qiskit's qubit i)."""
        from hpcq.circuits.qiskit_export import to_qiskit

        return to_qiskit(self, weights, features)


T = TypeVar("T")


class CircuitCache(Generic[T]):
    """Values a backend derives from a circuit (compiled blocks, kernel programs, contraction plans, noisy
    copies), per circuit object and setting. Circuits are held weakly, so their values go with them; a
    circuit's values are dropped when its `version` moves, so a changed circuit (even one of the same length)
    is never served a stale value; and at most `per_circuit` settings are kept per circuit (the oldest go
    first), as settings such as batch sizes or noise rates can vary without end."""

    def __init__(self, per_circuit: int = 16):
        self.per_circuit = per_circuit
        self._store: weakref.WeakKeyDictionary[Circuit, tuple[int, dict[Hashable, T]]]
        self._store = weakref.WeakKeyDictionary()

    def get(self, circuit: Circuit, key: Hashable, build: Callable[[], T]) -> T:
        """The value for (`circuit` as it is now, `key`): cached, else `build()` and kept."""
        version, values = self._store.get(circuit, (None, None))
        if values is None or version != circuit.version:
            values = {}
            self._store[circuit] = (circuit.version, values)
        if key not in values:
            if len(values) >= self.per_circuit:
                del values[next(iter(values))]
            values[key] = build()
        return values[key]
