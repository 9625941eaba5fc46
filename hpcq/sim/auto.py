"""`backend="auto"`: the fastest backend for one call, from the call's facts, and why.

`choose_backend(facts)` is a pure function of `CallFacts` (qubits, batch, gradient need, accelerator, whether
the compiled CPU kernels run the circuit, whether the batch of states fits in memory, which backends take the
call's options); `call_facts` gathers them for a real call and `expectation` runs the chosen backend, logging
the choice on the "hpcq.sim" logger at DEBUG level (`logging.getLogger("hpcq.sim").setLevel("DEBUG")`).
An explicit backend never comes here: `hpcq.sim.expectation(..., backend="statevector")` means statevector.

Measured on the 2-core Intel Xeon (AVX-512) this was tuned on, float32, 2 torch threads, load average 3-4
from other jobs; seconds per call (best of >= 3 after a warm-up) for <Z_{Q-1}> of `reuploading_ansatz(Q, 1, 1,
1)`; statevector = its compiled batched kernels, distributed = one process, its compiled in-place kernel; two
sittings where both are given:

    Q   batch  pass      statevector   distributed
    14    1    forward     0.0015        0.0014
    16    1    forward     0.020-0.023   0.15
    18    1    forward     0.038-0.040   0.16
    20    1    forward     0.16-0.17     0.0098-0.26
    22    1    forward     0.75-0.99     0.24-0.36
    24    1    forward     3.7           0.39
    16    1    fwd+grad    0.040-0.063   0.55-0.93
    18    1    fwd+grad    0.12-0.18     0.040-0.23
    20    1    fwd+grad    0.49-0.68     0.17-0.33
    22    1    fwd+grad    2.06-2.15     1.28-1.39
    22    4    forward     0.75          1.35
    24    2    forward     5.9           2.9
    24    4    forward     3.8           5.2
    4-14  32, 128, 435   forward and fwd+grad: statevector 7x-1000x faster (Q=14 batch 435 fwd+grad 0.18 vs
                          2.1; Q=12 batch 32 forward of reuploading_ansatz(12, 2, 3, 2) 0.0081 vs 0.73)

With the compiled adjoint of the in-place path (the backward un-applies stages of fused blocks in C instead of
permuting and multiplying in torch), measured on a 2-core AMD EPYC (AVX2) shared with other jobs (load 4-7),
float32, same loop, best of 5:

    Q   batch  pass      statevector   distributed
    16    1    fwd+grad    0.014         0.24
    18    1    fwd+grad    0.067         0.28
    20    1    fwd+grad    0.27          0.096
    22    1    fwd+grad    1.54          0.69
    24    1    fwd+grad    7.5           1.42

so the gradient threshold stays at 20: from there the in-place gradient is 3-5x faster than statevector's.

The statevector kernels put samples in SIMD lanes, so one sample costs what a full vector of them does; the
in-place kernel applies each fused block to one state with SIMD over amplitudes. So the in-place path wins
for single samples of >= 20 qubits, forward and gradient, and loses everywhere else. Its single-sample times
vary 10x on a loaded machine: each fused block opens an OpenMP region whose spinning threads compete with
torch's own pool (with OMP_WAIT_POLICY=passive its Q=12 forward went from 0.21 s to 0.0025 s); the thresholds
sit where it wins even then. The table came from this loop (grid: Q list, batch list, gradient or not):

    for Q, batch, grad, backend in grid:
        c = reuploading_ansatz(Q, 1, 1, 1); w = torch.rand(c.n_weights); x = torch.rand(batch, Q)
        def call():
            with torch.set_grad_enabled(grad):
                out = expectation(c, w.requires_grad_(grad), x.requires_grad_(grad), ["I" * (Q - 1) + "Z"],
                                  backend=backend)
                out.sum().backward() if grad else None
        call(); print(Q, batch, grad, backend, min(timeit.repeat(call, number=1, repeat=3)))

`hpcq bench scale --backend statevector|distributed --qubits 14..24` (forward, one sample) and `hpcq bench
head --backend statevector|distributed --layers 1 --connectivity 1 --reuploads 1 --qubits Q --batch B`
(forward+gradient) time the same calls.
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass

import torch

from hpcq.errors import ConfigError

LOG = logging.getLogger("hpcq.sim")

#: single-sample calls of at least this many qubits run in place on the distributed backend (one process)
IN_PLACE_FORWARD_QUBITS = 20
IN_PLACE_GRADIENT_QUBITS = 20
#: states smaller than this (complex128, with gradient) fit anywhere hpcq runs, so memory is not asked for them
SURELY_FREE_BYTES = 256 * 2**20
#: the backends auto chooses among; aer (the reference) and custatevec (not yet run on a GPU here) only by name
CANDIDATES = ("statevector", "distributed", "tensornet")


@dataclass(frozen=True)
class CallFacts:
    """What the choice depends on, for one `expectation` call."""

    n_qubits: int
    batch: int
    needs_grad: bool
    accelerator: str  # "cpu", "nvidia" or "amd" (hpcq.sim.accelerator.accelerator_of)
    compiled_kernels: bool  # the compiled CPU kernels run this circuit in this dtype here
    statevector_fits: bool  # the statevector backend's states for this batch fit in free memory
    amplitude_encoded: bool  # features are amplitudes (the tensornet backend cannot start from them)
    allowed: tuple[str, ...] = CANDIDATES  # the candidates whose `expectation` takes the call's options


def choose_backend(facts: CallFacts) -> tuple[str, str]:
    """(backend, why) for a call with these facts; see the module docstring for the measurements."""
    if "statevector" not in facts.allowed:
        return facts.allowed[0], f"the call's options are {facts.allowed[0]}'s"
    if facts.accelerator != "cpu":
        return "statevector", f"torch on the {facts.accelerator} GPU (custatevec only when named)"
    threshold = IN_PLACE_GRADIENT_QUBITS if facts.needs_grad else IN_PLACE_FORWARD_QUBITS
    if facts.compiled_kernels and facts.batch == 1 and facts.n_qubits >= threshold and "distributed" in facts.allowed:
        return "distributed", (f"one sample of {facts.n_qubits} >= {threshold} qubits: the single-state compiled "
                               "kernels, one process")
    if not facts.statevector_fits and not facts.amplitude_encoded and "tensornet" in facts.allowed:
        return "tensornet", f"{facts.batch} states of {facts.n_qubits} qubits do not fit in free memory"
    if not facts.compiled_kernels:
        return "statevector", "torch (the compiled kernels do not run this call)"
    return "statevector", f"batch {facts.batch} at {facts.n_qubits} qubits: the batched compiled kernels"


@functools.lru_cache(maxsize=64)
def _accepting(option_names: frozenset[str]) -> tuple[str, ...]:
    """The candidates whose `expectation` takes every one of `option_names` (cached: a small call takes 0.1 ms)."""
    from hpcq.sim import backend_module

    allowed = tuple(name for name in CANDIDATES
                    if option_names <= set(inspect.signature(backend_module(name).expectation).parameters))
    if not allowed:
        raise ConfigError(f"backend='auto' takes no backend with options {', '.join(sorted(option_names))}; name "
                          f"the backend these options belong to (one of {', '.join(CANDIDATES)}, aer, custatevec)")
    return allowed


def _statevector_fits(n: int, batch: int, dtype: torch.dtype, device: torch.device, gradient: bool) -> bool:
    from hpcq.errors import ResourceError
    from hpcq.sim.memory import STATES_WITH_GRADIENT, check_statevector_fits

    if STATES_WITH_GRADIENT * batch * 2**n * 16 < SURELY_FREE_BYTES:  # skip asking the OS on every small call
        return True
    try:
        check_statevector_fits(n, batch, dtype, False, device, gradient)
    except ResourceError:
        return False
    return True


def call_facts(circuit, weights: torch.Tensor, features: torch.Tensor | None, **options) -> CallFacts:
    """The facts of a real call (the same arguments as `expectation`)."""
    from hpcq.sim.accelerator import accelerator_of
    from hpcq.sim.inputs import wants_gradient
    from hpcq.sim.kernel.choice import compiled_kernels

    batch = 1 if features is None else (features.shape[0] if features.dim() == 2 else 1)
    gradient = wants_gradient(weights, features)
    kernels = weights.dtype in (torch.float32, torch.float64) and \
        compiled_kernels(options.get("kernel", "auto"), circuit, weights.device) is not None
    return CallFacts(circuit.n_qubits, batch, gradient, accelerator_of(weights.device), kernels,
                     _statevector_fits(circuit.n_qubits, batch, weights.dtype, weights.device, gradient),
                     circuit.amplitude_features is not None, _accepting(frozenset(options)))


def _local_comm():
    """A one-rank communicator under an MPI launcher (else None): auto's distributed run is this process's own,
    never a state split over ranks that each hold different samples (data parallelism)."""
    from hpcq.runtime import mpi_world

    if mpi_world().comm is None:
        return None
    from mpi4py import MPI

    return MPI.COMM_SELF


def expectation(circuit, weights: torch.Tensor, features: torch.Tensor | None, observables="Z",
                **options) -> torch.Tensor:
    """`hpcq.sim.expectation` on the backend `choose_backend` picks for this call."""
    from hpcq.sim import backend_module

    name, why = choose_backend(call_facts(circuit, weights, features, **options))
    LOG.debug("backend auto -> %s: %s", name, why)
    if name == "distributed" and "comm" not in options:
        options["comm"] = _local_comm()
    return backend_module(name).expectation(circuit, weights, features, observables, **options)
