"""The `aer` backend: Qiskit Aer as the reference, exact or shot-based, with optional noise models.

Exact mode saves expectation values inside the simulator (density matrix when there is noise, so noisy
values are exact too); shot mode rotates each Pauli string into the Z basis, measures, and averages parities.
Values only: Aer has no gradients, so requesting one raises an error that points at `statevector`.

`device="GPU"` runs Aer on an NVIDIA GPU with cuStateVec (`cuStateVec_enable`). That needs qiskit-aer-gpu,
which installs the same `qiskit_aer` module as qiskit-aer and pins an older cuQuantum than cuquantum-python,
so it lives in its own environment and image (the `aer-gpu` extra, containers/hpcq-aer-gpu.def).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim.inputs import wants_gradient
from hpcq.sim.observables import Pauli, parse_observables
from hpcq.sim.shots import check_shots


DEVICES = ("CPU", "GPU")


def _simulator(noise_model, exact: bool, seed: int | None, device: str = "CPU"):
    if device not in DEVICES:
        raise ConfigError(f"device={device!r} is not an Aer device; use one of {', '.join(DEVICES)}")
    try:
        from qiskit_aer import AerSimulator
    except ImportError as err:
        raise MissingDependencyError("qiskit-aer", "test", "the 'aer' backend") from err
    method = "density_matrix" if (noise_model is not None and exact) else "statevector"
    options = {"method": method, "noise_model": noise_model}
    if device == "GPU":
        available = AerSimulator().available_devices()
        if "GPU" not in available:
            raise ConfigError(
                f"backend 'aer' with device='GPU': this qiskit-aer runs on {', '.join(available)} only. Use an "
                "environment with qiskit-aer-gpu instead (pip uninstall -y qiskit-aer && pip install "
                "'hpcq[aer-gpu]', on a machine with an NVIDIA GPU), or the hpcq-aer-gpu image"
            )
        options.update(device="GPU", cuStateVec_enable=True)
    if seed is not None:
        options["seed_simulator"] = seed
    return AerSimulator(**options)


def _measured_in_z_basis(qc, pauli: Pauli):
    """Copy of `qc` with each X/Y qubit rotated so that a Z-basis measurement reads that Pauli."""
    rotated = qc.copy()
    for q in pauli.x:
        rotated.h(q)
    for q in pauli.y:
        rotated.sdg(q)
        rotated.h(q)
    rotated.measure_all()
    return rotated


def _parity_mean(counts: dict[str, int], qubits: frozenset[int]) -> float:
    total = sum(counts.values())
    signed = 0
    for bits, count in counts.items():
        bits = bits.replace(" ", "")
        parity = sum(bits[len(bits) - 1 - q] == "1" for q in qubits) % 2
        signed += -count if parity else count
    return signed / total


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables: str | Sequence[str] = "Z",
    *,
    shots: int | None = None,
    noise_model=None,
    seed: int | None = None,
    device: str = "CPU",
) -> torch.Tensor:
    """[batch, n_observables] from Qiskit Aer: exact when `shots` is None, else averaged over `shots`; on the
    CPU, or with `device="GPU"` on an NVIDIA GPU through cuStateVec."""
    if wants_gradient(weights, features):
        raise ConfigError("backend 'aer' returns values without gradients; use backend='statevector' to train, "
                          "or call it under torch.no_grad()")
    check_shots(shots)
    paulis = parse_observables(observables, circuit.n_qubits)
    samples = [None] if features is None else list(features.detach().cpu().double())
    simulator = _simulator(noise_model, exact=shots is None, seed=seed, device=device)
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp

    rows = []
    for sample in samples:
        qc = circuit.to_qiskit(weights.detach().cpu().double(), sample)
        if shots is None:
            for i, pauli in enumerate(paulis):
                qc.save_expectation_value(SparsePauliOp(pauli.label(circuit.n_qubits)), range(circuit.n_qubits),
                                          label=f"o{i}")
            data = simulator.run(transpile(qc, simulator)).result().data(0)
            rows.append([float(np.real(data[f"o{i}"])) for i in range(len(paulis))])
        else:
            jobs = [transpile(_measured_in_z_basis(qc, p), simulator) for p in paulis]
            result = simulator.run(jobs, shots=shots).result()
            rows.append([_parity_mean(result.get_counts(j), p.signs | p.flips) for j, p in enumerate(paulis)])
    return torch.tensor(rows, dtype=weights.dtype, device=weights.device)
