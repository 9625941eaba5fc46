"""Whether a call runs through the compiled kernels: the `kernel` option the state-vector backends share."""

from __future__ import annotations

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError
from hpcq.sim.kernel.library import KernelLibrary, load_library
from hpcq.sim.kernel.program import unsupported_gates

#: values of expectation(kernel=...): "auto" takes the kernels where they can run, the others insist
KERNELS = ("auto", "compiled", "torch")


def compiled_kernels(kernel: str, circuit: Circuit, device: torch.device) -> KernelLibrary | None:
    """The compiled kernels when `kernel` asks for them and they can run this circuit here, else None."""
    if kernel not in KERNELS:
        raise ConfigError(f"kernel={kernel!r} is not one of {', '.join(KERNELS)}")
    if kernel == "torch":
        return None
    complex_gates = unsupported_gates(circuit)
    reason = None
    if device.type != "cpu":
        reason = f"they run on CPU tensors, and the weights are on {device}"
    elif complex_gates:
        reason = f"they run real circuits only, and gates {', '.join(complex_gates)} are complex"
    if reason is None:
        return load_library()  # None, with one warning per process, when they cannot be built
    if kernel == "compiled":
        raise ConfigError(f"kernel='compiled' cannot be used: {reason}; use kernel='auto' or kernel='torch'")
    return None
