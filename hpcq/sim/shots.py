"""Finite shots: expectation values estimated from k measurement samples, with a gradient that trains.

Every Pauli string has eigenvalues ±1, so k shots of <P> are k draws of a ±1 variable with
P(+1) = (1 + <P>)/2: the estimate is 2·Binomial(k, (1 + <P>)/2)/k − 1, unbiased with standard error
sqrt((1 − <P>²)/k). Each observable is sampled independently: its marginal is exact, but the shot noise of
different observables measured in the same shots (which a QPU would correlate) is not.

Gradient: straight-through. The backward pass uses the exact (adjoint) gradient of <P>, so the gradient of
the loss is the one of the exact expectation evaluated at the shot estimate. Because the estimate is unbiased,
E[estimate] = <P>, and a layer that is linear in the estimate (the quantum head's readout) gets an unbiased
gradient; a parameter-shift rule with shots would also be unbiased but needs 2 circuits per parameter.
"""

from __future__ import annotations

from typing import Sequence

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError


def check_shots(shots: int | None, key: str = "shots") -> int | None:
    """`shots` itself when it is None (exact) or a positive integer, else a ConfigError naming `key`."""
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise ConfigError(f"{key}={shots!r} must be a positive integer, or null for exact expectation values")
    return shots


def sample_shots(values: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot estimates of ±1-valued observables with exact means `values`; gradients pass straight through."""
    check_shots(shots)
    with torch.no_grad():
        p_plus = ((1 + values.detach()) / 2).clamp(0, 1).to(torch.float64)
        counts = torch.binomial(torch.full_like(p_plus, float(shots)), p_plus, generator=generator)
        estimate = (2 * counts / shots - 1).to(values.dtype)
    return values + (estimate - values).detach()


def estimate_expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables: str | Sequence[str] = "Z",
    *,
    backend: str = "statevector",
    shots: int | None = None,
    noise=None,
    generator: torch.Generator | None = None,
    **options,
) -> torch.Tensor:
    """What a QPU would report: exact or noisy <P> (hpcq.sim.noise), then `shots` samples if given.

    Differentiable in weights and features on the statevector backend (noise by trajectories, shots
    straight-through). `noise` is a `hpcq.sim.noise.NoiseSpec` (or its mapping form) or None.
    """
    from hpcq.sim import expectation
    from hpcq.sim.noise import NoiseSpec, noisy_expectation

    check_shots(shots)
    spec = NoiseSpec.from_config(noise)
    if spec is None or spec.is_ideal:
        values = expectation(circuit, weights, features, observables, backend=backend, **options)
    else:
        if backend != "statevector":
            raise ConfigError(f"noise is simulated on the 'statevector' backend, not {backend!r}; set backend: "
                              "statevector, or use backend 'aer' with a qiskit_aer NoiseModel for values only")
        values = noisy_expectation(circuit, weights, features, observables, spec, generator=generator, **options)
    return values if shots is None else sample_shots(values, shots, generator)
