"""The memory plan of one run, made before anything is allocated."""

from __future__ import annotations

import torch

from hpcq.bench.scale.spec import ScaleSpec
from hpcq.sim.precision import DTYPES


def check_run_fits(spec: ScaleSpec, circuit, ranks: int, comm, device: torch.device) -> None:
    """The run's memory plan; raises ResourceError (same on every rank) before anything is allocated."""
    dtype = DTYPES[spec.dtype]
    n = circuit.n_qubits
    if spec.backend == "distributed":
        from hpcq.sim.distributed import check_memory, runs_in_place
        from hpcq.sim.memory import amplitude_bytes

        check_memory(n, ranks, 1, amplitude_bytes(dtype, False), spec.gradient, comm=comm, device=device,
                     min_local_qubits=2, in_place=runs_in_place(circuit, device, kernel=spec.kernel))
    else:
        from hpcq.sim.memory import check_statevector_fits

        check_statevector_fits(n, 1, dtype, spec.backend == "custatevec", device, gradient=spec.gradient)
