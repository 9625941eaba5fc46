"""Noisy gates and readout on the statevector backend: depolarizing channels by Pauli trajectories.

Model (the same as Qiskit Aer's `depolarizing_error` and `ReadoutError`, see `aer_noise_model`):
after every 1-qubit gate, ρ → (1 − λ₁)ρ + λ₁·I/2 ⊗ Tr_q ρ on its qubit; after every 2-qubit gate the same
with λ₂ on its pair; a measured bit reads 1 instead of 0 with probability p01 and 0 instead of 1 with p10.

Why trajectories rather than a density matrix: a 10-qubit density matrix is 2^20 numbers per sample, and
differentiating through hundreds of channel applications on it is far too slow to train on. A depolarizing
channel is exactly the average over "with probability λ, apply a uniformly random Pauli on the gate's qubits"
(Pauli twirl: the uniform Pauli average of ρ is I/2^n·Tr ρ), so each trajectory is a pure-state circuit.
Every gate is followed, on each of its qubits, by two *feature* slots rx(a)·rz(b) with a, b ∈ {0, π}:
(0,0) = I, (π,0) ∝ X, (0,π) ∝ Z, (π,π) ∝ Y (global phases drop out of expectation values). One compiled
circuit therefore serves every trajectory, each sample of a batch draws its own Paulis, and the existing
adjoint gradient applies per trajectory. The trajectory mean is an unbiased estimate of the noisy <P> and
its gradient an unbiased estimate of the noisy gradient; `trajectories` per sample trade variance for time.

Readout error is applied exactly to the trajectory mean: a ±1 outcome whose bit flips 0→1 with p01 and 1→0
with p10 has mean (p10 − p01) + (1 − p01 − p10)·<P> (one qubit); a Pauli string on w qubits with symmetric
flips p has mean (1 − 2p)^w·<P>.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Sequence

import torch

from hpcq.circuits.circuit import GATE_ARITY, Circuit, CircuitCache
from hpcq.errors import ConfigError
from hpcq.sim.observables import Pauli, parse_observables

#: hpcq gate name → Qiskit gate name, for the Aer noise model
QISKIT_NAMES = {"cnot": "cx"}
NOISE_KEYS = ("depolarizing_1q", "depolarizing_2q", "readout", "trajectories")


@dataclass(frozen=True)
class NoiseSpec:
    """Depolarizing probabilities λ after 1- and 2-qubit gates, readout flips (p01, p10) or one p for both,
    and Pauli trajectories per sample. Validated on construction."""

    depolarizing_1q: float = 0.0
    depolarizing_2q: float = 0.0
    readout: tuple[float, float] | float = (0.0, 0.0)
    trajectories: int = 1
    key: str = field(default="noise", compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("depolarizing_1q", "depolarizing_2q"):
            object.__setattr__(self, name, _probability(getattr(self, name), f"{self.key}.{name}"))
        pair = self.readout if isinstance(self.readout, (list, tuple)) else (self.readout, self.readout)
        if len(pair) != 2:
            raise ConfigError(f"{self.key}.readout={self.readout!r} must be one flip probability or a pair [p01, p10]")
        object.__setattr__(self, "readout", tuple(_probability(p, f"{self.key}.readout") for p in pair))
        if isinstance(self.trajectories, bool) or not isinstance(self.trajectories, int) or self.trajectories < 1:
            raise ConfigError(f"{self.key}.trajectories={self.trajectories!r} must be a positive integer")

    @property
    def is_ideal(self) -> bool:
        return self.depolarizing_1q == 0 and self.depolarizing_2q == 0 and self.readout == (0.0, 0.0)

    @property
    def has_gate_noise(self) -> bool:
        return self.depolarizing_1q > 0 or self.depolarizing_2q > 0

    @classmethod
    def from_config(cls, noise, key: str = "noise") -> "NoiseSpec | None":
        """A spec from None, a NoiseSpec, or a mapping with keys NOISE_KEYS; errors name `key`."""
        if noise is None or isinstance(noise, NoiseSpec):
            return noise
        if not isinstance(noise, Mapping):
            raise ConfigError(f"{key}={noise!r} must be null or a mapping with keys {', '.join(NOISE_KEYS)}")
        unknown = sorted(set(noise) - set(NOISE_KEYS))
        if unknown:
            raise ConfigError(f"{key}: unknown key(s) {unknown}; the noise model knows {', '.join(NOISE_KEYS)}")
        return cls(**noise, key=key)


def _probability(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}={value!r} must be a probability between 0 and 1")
    return float(value)


@dataclass(frozen=True)
class PauliSlots:
    """A circuit with Pauli slots after its gates: slot j reads features first + 2j (rx) and first + 2j + 1 (rz)."""

    circuit: Circuit
    first: int
    location_probability: torch.Tensor  # [locations] λ of each noisy gate
    slot_location: torch.Tensor  # [slots] which location each (gate, qubit) slot belongs to


def with_pauli_slots(circuit: Circuit, spec: NoiseSpec) -> PauliSlots:
    """`circuit` with rx·rz Pauli slots on the qubits of every gate whose depolarizing probability is > 0."""
    noisy = Circuit(circuit.n_qubits)
    if circuit.amplitude_features is not None:
        noisy.encode_amplitudes(circuit.amplitude_features)
    first = circuit.n_features
    probabilities: list[float] = []
    slot_location: list[int] = []
    for gate in circuit.gates:
        angle = {} if gate.source is None else {gate.source: gate.value if gate.source == "value" else gate.index}
        noisy.gate(gate.name, gate.qubits, **angle)
        probability = spec.depolarizing_1q if GATE_ARITY[gate.name] == 1 else spec.depolarizing_2q
        if probability == 0:
            continue
        for qubit in gate.qubits:
            slot = first + 2 * len(slot_location)
            noisy.gate("rx", qubit, feature=slot)
            noisy.gate("rz", qubit, feature=slot + 1)
            slot_location.append(len(probabilities))
        probabilities.append(probability)
    return PauliSlots(noisy, first, torch.tensor(probabilities, dtype=torch.float64),
                      torch.tensor(slot_location, dtype=torch.long))


def sample_pauli_angles(slots: PauliSlots, rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[rows, 2·slots] angles: per row and noisy gate, an error with probability λ, then a uniform Pauli
    (I, X, Z or Y) on each of the gate's qubits; 0 or π in the rx and rz slots."""
    events = torch.rand(rows, len(slots.location_probability), generator=generator, dtype=torch.float64)
    struck = (events < slots.location_probability)[:, slots.slot_location]
    pauli = torch.randint(0, 4, struck.shape, generator=generator) * struck  # 0 I, 1 X, 2 Z, 3 Y
    angles = torch.stack([pauli & 1, (pauli >> 1) & 1], dim=-1).to(torch.float64) * math.pi
    return angles.reshape(rows, -1)


def readout_transform(values: torch.Tensor, paulis: list[Pauli], readout: tuple[float, float]) -> torch.Tensor:
    """Expectation values as read through bit flips p01 (0 read as 1) and p10 (1 read as 0)."""
    p01, p10 = readout
    if p01 == 0 and p10 == 0:
        return values
    columns = []
    for i, pauli in enumerate(paulis):
        weight = len(pauli.x | pauli.y | pauli.z)
        if weight == 1:
            columns.append((p10 - p01) + (1 - p01 - p10) * values[:, i])
        elif p01 == p10:
            columns.append((1 - 2 * p01) ** weight * values[:, i])
        else:
            raise ConfigError(
                f"asymmetric readout error (p01={p01}, p10={p10}) on observable {i}, which acts on qubits "
                f"{sorted(pauli.x | pauli.y | pauli.z)}, is not supported; use one flip probability or "
                "single-qubit observables"
            )
    return torch.stack(columns, dim=1) if columns else values


_SLOTS: CircuitCache[PauliSlots] = CircuitCache()


def _cached_slots(circuit: Circuit, spec: NoiseSpec) -> PauliSlots:
    """One slotted circuit per (circuit as it is, rates), so the simulator's compile cache stays warm."""
    rates = (spec.depolarizing_1q, spec.depolarizing_2q)
    return _SLOTS.get(circuit, rates, lambda: with_pauli_slots(circuit, spec))


def noisy_expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables: str | Sequence[str],
    noise: NoiseSpec,
    *,
    generator: torch.Generator | None = None,
    return_stderr: bool = False,
    **options,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Noisy <P> [batch, n_observables]: the mean over `noise.trajectories` Pauli trajectories per sample,
    read through the readout error. Differentiable in weights and features (adjoint per trajectory).
    With `return_stderr`, also the standard error of each mean over its trajectories (0 without gate noise,
    where the value is exact; NaN for a single trajectory)."""
    from hpcq.sim.statevector import expectation

    paulis = parse_observables(observables, circuit.n_qubits)
    batch = 1 if features is None else features.shape[0]
    # Readout error alone is exact: one "trajectory" of the ideal circuit.
    trajectories = noise.trajectories if noise.has_gate_noise else 1
    rows = batch * trajectories
    if noise.has_gate_noise:
        slots = _cached_slots(circuit, noise)
        base = (torch.zeros(rows, 0, dtype=weights.dtype, device=weights.device) if features is None
                else features.to(weights.dtype).repeat_interleave(trajectories, dim=0))
        angles = sample_pauli_angles(slots, rows, generator).to(weights.dtype).to(weights.device)
        per_row = expectation(slots.circuit, weights, torch.cat([base, angles], dim=1), observables, **options)
    else:
        per_row = expectation(circuit, weights, features, observables, **options)
    per_row = readout_transform(per_row, paulis, noise.readout).view(batch, trajectories, len(paulis))
    mean = per_row.mean(dim=1)
    if not return_stderr:
        return mean
    if trajectories == 1:
        return mean, torch.zeros_like(mean) if not noise.has_gate_noise else torch.full_like(mean, float("nan"))
    return mean, per_row.detach().std(dim=1) / math.sqrt(trajectories)


def aer_noise_model(noise: NoiseSpec | Mapping):
    """The same noise as a `qiskit_aer.noise.NoiseModel`, for `hpcq.sim.expectation(..., backend="aer",
    noise_model=...)`: depolarizing errors after every 1- and 2-qubit gate hpcq emits, readout on every qubit."""
    from hpcq.errors import MissingDependencyError

    spec = NoiseSpec.from_config(noise)
    try:
        from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error
    except ImportError as err:
        raise MissingDependencyError("qiskit-aer", "test", "building an Aer noise model") from err
    model = NoiseModel()
    for arity, probability in ((1, spec.depolarizing_1q), (2, spec.depolarizing_2q)):
        names = [QISKIT_NAMES.get(name, name) for name, n in GATE_ARITY.items() if n == arity]
        if probability > 0:
            model.add_all_qubit_quantum_error(depolarizing_error(probability, arity), names)
    p01, p10 = spec.readout
    if p01 > 0 or p10 > 0:
        model.add_all_qubit_readout_error(ReadoutError([[1 - p01, p01], [p10, 1 - p10]]))
    return model
