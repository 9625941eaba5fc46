"""What every simulator backend checks of its inputs, and the initial state amplitude features make.

Each backend's `expectation` calls `validate_inputs` first, so a wrong shape, dtype or a NaN is refused with
the same words whichever backend runs.
"""

from __future__ import annotations

import math
import os

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError

#: set (to anything) to check inputs on GPUs too, where the check waits for the device on every call
DEBUG_ENV = "HPCQ_DEBUG"


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """ConfigError naming `tensor` when it holds NaN or ±Inf, which would come out as NaN expectations.

    Always on for CPU tensors, where it costs one sum (a few µs; a call takes 0.5 ms or more). On a GPU,
    reading the answer back waits for the device and stalls the queue on every call, so there it runs only
    when the HPCQ_DEBUG environment variable is set."""
    if tensor.device.type != "cpu" and not os.environ.get(DEBUG_ENV):
        return
    values = tensor.detach()
    # NaN and ±Inf make the sum non-finite; only then (finite values can also overflow it) look element-wise.
    if math.isfinite(values.sum()):
        return
    bad = ~torch.isfinite(values)
    if bad.any():
        first = [int(i) for i in bad.nonzero()[0]]
        raise ConfigError(
            f"{name} holds {int(bad.sum())} NaN/Inf value(s) (the first at {first}), which would give NaN "
            f"expectations; find where they come from (the input data, or a diverged training step: lower "
            f"train.lr)"
        )


def validate_inputs(circuit: Circuit, weights: torch.Tensor,
                    features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(weights, features in the weights' dtype or None, batch) after checking shapes, dtype and finiteness;
    a ConfigError names the bad value and the shape the circuit needs."""
    if not isinstance(weights, torch.Tensor):
        raise ConfigError(f"weights must be a torch tensor of shape [{circuit.n_weights}], "
                          f"got {type(weights).__name__}")
    if weights.dim() != 1 or weights.shape[0] != circuit.n_weights:
        raise ConfigError(
            f"weights has shape {tuple(weights.shape)} but the circuit uses {circuit.n_weights} weights; "
            f"pass a 1-D tensor of shape [{circuit.n_weights}]"
        )
    if weights.dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"weights dtype {weights.dtype} is not supported; "
                          "use torch.float32 or torch.float64")
    check_finite("weights", weights)
    if circuit.n_features == 0 and features is None:
        return weights, None, 1
    if (not isinstance(features, torch.Tensor) or features.dim() != 2
            or features.shape[1] != circuit.n_features):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ConfigError(
            f"features has shape {shape} but the circuit reads {circuit.n_features} features per sample; "
            f"pass a 2-D tensor of shape [batch, {circuit.n_features}]"
        )
    if features.shape[0] < 1:
        raise ConfigError("features has an empty batch; pass at least one sample")
    check_finite("features", features)
    return weights, features.to(weights.dtype), features.shape[0]


def amplitude_state(features: torch.Tensor, n_amplitudes: int, n_qubits: int) -> torch.Tensor:
    """L2-normalised features zero-padded to 2**n_qubits amplitudes (an all-zero row stays all zero)."""
    vector = features[:, :n_amplitudes]
    norm = torch.sqrt((vector * vector).sum(dim=1, keepdim=True) + torch.finfo(vector.dtype).tiny)
    return torch.nn.functional.pad(vector / norm, (0, 2**n_qubits - n_amplitudes))


def wants_gradient(weights: torch.Tensor, features: torch.Tensor | None) -> bool:
    """Whether autograd will ask this call for a gradient (the backward pass then needs its states)."""
    return torch.is_grad_enabled() and (weights.requires_grad
                                        or (features is not None and features.requires_grad))
