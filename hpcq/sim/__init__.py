"""Simulator backends behind one interface: `expectation(circuit, weights, features, observables, backend=...)`.

`backend="auto"` (the default) picks one per call (`hpcq.sim.auto`); a named backend is always the one used."""

from __future__ import annotations

from importlib import import_module
from typing import Sequence

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError

#: backend name → module implementing `expectation(circuit, weights, features, observables, **options)`
BACKENDS: dict[str, str] = {
    "auto": "hpcq.sim.auto",
    "statevector": "hpcq.sim.statevector",
    "aer": "hpcq.sim.aer",
    "distributed": "hpcq.sim.distributed",
    "tensornet": "hpcq.sim.tensornet",
    "custatevec": "hpcq.sim.custatevec",
}


def backend_module(name: str):
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    return import_module(BACKENDS[name])


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables: str | Sequence[str] = "Z",
    backend: str = "auto",
    **options,
) -> torch.Tensor:
    """Expectation values [batch, n_observables], differentiable in `weights` and `features`.

    `observables`: Pauli strings in Qiskit's label order (`"IIZ"` is Z on qubit 0) or `"Z"` for Z on every
    qubit. Precision follows `weights.dtype` (float32 → single, float64 → double).
    """
    return backend_module(backend).expectation(circuit, weights, features, observables, **options)


__all__ = ["expectation", "BACKENDS"]
