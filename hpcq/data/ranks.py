"""MPI ranks for data parallelism: which ranks exist, and which contiguous slice of samples each one owns.

mpi4py is optional. It is imported only when an MPI launcher (mpiexec, srun with PMI/PMIx) started this
process, so plain runs never pay MPI's start-up cost, and a run without mpi4py is one rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hpcq.errors import ConfigError, MissingDependencyError

# Environment variables that Open MPI, MPICH/Hydra, Cray PMI and PMIx launchers set in every rank.
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS")
_LAUNCHER_VARS = (*_LAUNCHER_SIZE_VARS, "PMIX_RANK", "PMI_RANK")


@dataclass(frozen=True)
class World:
    """This process's rank, the number of ranks, and the mpi4py communicator (None for one rank)."""

    rank: int
    size: int
    comm: Any = None


def mpi_world() -> World:
    """The MPI world if an MPI launcher started this process, else a single rank."""
    if not any(var in os.environ for var in _LAUNCHER_VARS):
        return World(0, 1)
    try:
        from mpi4py import MPI
    except ImportError:
        launched = max((int(os.environ.get(var, "1")) for var in _LAUNCHER_SIZE_VARS), default=1)
        if launched > 1:
            # Without mpi4py every rank would believe it is rank 0 and redo all the work.
            raise MissingDependencyError(
                "mpi4py", "mpi", f"running under an MPI launcher with {launched} ranks"
            )
        return World(0, 1)
    comm = MPI.COMM_WORLD
    return World(comm.Get_rank(), comm.Get_size(), comm)


def partition(n_samples: int, rank: int, world: int) -> slice:
    """The contiguous, balanced slice of `n_samples` that `rank` of `world` ranks owns.

    The first `n_samples % world` ranks get one sample more; the slices tile 0..n_samples in rank order, so
    concatenating every rank's part in rank order restores the original order.

    Data parallelism: all ranks draw the same shuffled global batch B (same seed), and rank r works on
    `B[partition(len(B), r, world)]`. If each rank sums its per-sample losses and divides by the GLOBAL batch
    size len(B) (not its own part's size), an allreduce-SUM of the gradients is exactly the 1-rank gradient
    of the batch mean, even when len(B) does not divide evenly (a short last batch).
    """
    if world < 1:
        raise ConfigError(f"world size must be at least 1, got {world}")
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is outside 0..{world - 1} for a world of {world} ranks")
    if n_samples < 0:
        raise ConfigError(f"n_samples must be non-negative, got {n_samples}")
    base, extra = divmod(n_samples, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))
