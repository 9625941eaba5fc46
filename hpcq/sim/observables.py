"""Pauli-string observables in Qiskit's label order (the last character acts on qubit 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hpcq.errors import ConfigError


@dataclass(frozen=True)
class Pauli:
    """A Pauli string as sets of qubits carrying X, Y and Z."""

    x: frozenset[int]
    y: frozenset[int]
    z: frozenset[int]

    @property
    def is_diagonal(self) -> bool:
        return not self.x and not self.y

    @property
    def flips(self) -> frozenset[int]:
        """Qubits whose bit the operator flips (X and Y)."""
        return self.x | self.y

    @property
    def signs(self) -> frozenset[int]:
        """Qubits that contribute a (−1)^bit sign (Z and Y)."""
        return self.z | self.y

    def label(self, n_qubits: int) -> str:
        chars = ["I"] * n_qubits
        for name, qubits in (("X", self.x), ("Y", self.y), ("Z", self.z)):
            for q in qubits:
                chars[n_qubits - 1 - q] = name
        return "".join(chars)


def parse_observables(observables: str | Sequence[str], n_qubits: int) -> list[Pauli]:
    """`"Z"` means Z on every qubit (one output per qubit); otherwise a list of n-character labels."""
    if isinstance(observables, str):
        if observables == "Z":
            return [Pauli(frozenset(), frozenset(), frozenset({q})) for q in range(n_qubits)]
        observables = [observables]
    paulis = []
    for label in observables:
        if not isinstance(label, str) or len(label) != n_qubits or set(label) - set("IXYZ"):
            raise ConfigError(
                f"observable {label!r} must be a string of {n_qubits} characters from I, X, Y, Z "
                f"(Qiskit order: the last character is qubit 0, e.g. {'I' * (n_qubits - 1) + 'Z'!r} for Z_0), "
                "or \"Z\" for Z on every qubit"
            )
        sets = {c: frozenset(n_qubits - 1 - i for i, ch in enumerate(label) if ch == c) for c in "XYZ"}
        paulis.append(Pauli(sets["X"], sets["Y"], sets["Z"]))
    if not paulis:
        raise ConfigError("observables is empty; give at least one Pauli string")
    return paulis
