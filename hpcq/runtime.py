"""Runtime facts of this process, below every other hpcq package: which launcher started it and its place
among the ranks (rank, world size, rank on its node), rank 0's address, the MPI communicator, and waiting for
a device's queued work.

One launcher rule for the whole package (`launch_of`), checked in this order:

1. torchrun: RANK, WORLD_SIZE, LOCAL_RANK. torchrun's agent sets them for each worker it starts; when the
   agent itself runs under srun or mpiexec, the outer launcher's variables describe the agents, not us.
2. An MPI launcher: Open MPI's mpiexec (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK), or MPICH's Hydra, Cray
   PMI and Cray PALS (PMI_RANK, PMI_SIZE; on the node: MPI_LOCALRANKID, PMI_LOCAL_RANK, PALS_LOCAL_RANKID).
   These come before Slurm's because mpiexec inside a Slurm job starts its daemons (prted, hydra_pmi_proxy)
   with srun, one per node: the SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID the ranks inherit count
   daemons, so under Slurm-first every rank of a node would believe it is the node's index, and all of them
   would take GPU 0. When the MPI numbers equal the Slurm step's, srun set both (`srun --mpi=pmi2`, Cray's
   `cray_shasta`): the launcher is srun, whose step node list gives rank 0's address without MPI.
3. A Slurm step: SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID. The batch script of a job is no step
   (it has no SLURM_STEP_NUM_TASKS), so a plain command in a job script stays one rank.
4. Otherwise one rank.

mpi4py is optional and imported only when an MPI process manager is wired into this process (`mpi_world`),
so plain runs never pay MPI's start-up cost. Neither torch nor mpi4py is imported on import of this module:
`hpcq.results.env` reads the launch without initialising either.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from hpcq.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import torch

#: variables an MPI process manager (Open MPI's, Hydra's, Cray PMI's, PMIx's) sets in every rank it starts:
#: with one of them, MPI_Init finds the other ranks; without, it would start a world of one
MPI_PROCESS_MANAGER_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS",
)
#: a PMI launcher's rank on the node: MPICH's Hydra, Cray PMI, Cray PALS
_PMI_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "PMI_LOCAL_RANK", "PALS_LOCAL_RANKID")
#: one host-list item: text and bracket groups, no comma outside brackets
_HOST_ITEM = r"(?:[^,\[\]]|\[[^\[\]]*\])+"


@dataclass(frozen=True)
class Launch:
    """How this process was started: its rank among `world_size`, its rank on the node, the launcher
    (single, torchrun, mpi or slurm), and rank 0's address when known."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"
    master_addr: str | None = None
    master_port: int | None = None


def _int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    if name not in environ and default is not None:
        return default
    try:
        return int(environ[name])
    except ValueError:
        raise ConfigError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def _first_int(environ: Mapping[str, str], names: tuple[str, ...]) -> int:
    return next((_int(environ, name) for name in names if name in environ), 0)


def launch_of(environ: Mapping[str, str] | None = None) -> Launch:
    """The launch this process belongs to, by the module's launcher rule, from environment variables only;
    rank 0's address only as MASTER_ADDR / MASTER_PORT export it (`detect_launch` finds srun's)."""
    env = os.environ if environ is None else environ
    addr = env.get("MASTER_ADDR")
    port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else None
    if "RANK" in env and "WORLD_SIZE" in env:
        return Launch(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK", 0), "torchrun",
                      addr, port)
    if "OMPI_COMM_WORLD_SIZE" in env:
        mpi = Launch(_int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE"),
                     _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0), "mpi", addr, port)
    elif "PMI_SIZE" in env and "PMI_RANK" in env:
        mpi = Launch(_int(env, "PMI_RANK"), _int(env, "PMI_SIZE"), _first_int(env, _PMI_LOCAL_RANK_VARIABLES),
                     "mpi", addr, port)
    else:
        mpi = None
    step = None
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        step = Launch(_int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS"),
                      _int(env, "SLURM_LOCALID", 0), "slurm", addr, port)
    if mpi is not None and (step is None or (mpi.rank, mpi.world_size) != (step.rank, step.world_size)):
        return mpi
    return step or Launch()


def detect_launch(environ: Mapping[str, str] | None = None) -> Launch:
    """`launch_of`, and for a Slurm step without MASTER_ADDR / MASTER_PORT rank 0's address: the first node
    of the step's node list and a port derived from the job and step ids."""
    env = os.environ if environ is None else environ
    launch = launch_of(env)
    if launch.launcher != "slurm":
        return launch
    addr, port = launch.master_addr, launch.master_port
    if addr is None and "SLURM_STEP_NODELIST" in env:
        addr = first_host(env["SLURM_STEP_NODELIST"])
    if port is None and "SLURM_JOB_ID" in env:
        # Ranks of one step agree on it without talking; distinct jobs on a node rarely collide.
        port = 20000 + (_int(env, "SLURM_JOB_ID") * 7 + int(env.get("SLURM_STEP_ID", "0") or 0)) % 20000
    return Launch(launch.rank, launch.world_size, launch.local_rank, launch.launcher, addr, port)


def node_local_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank among the ranks on its node (0 when no launcher started it)."""
    return launch_of(environ).local_rank


# ----------------------------------------------------------------------------------------------- MPI


@dataclass(frozen=True)
class World:
    """This process's rank, the number of ranks, and the mpi4py communicator (None for one rank)."""

    rank: int
    size: int
    comm: Any = None


def mpi_world() -> World:
    """The MPI world if an MPI process manager started this process, else a single rank."""
    if not any(var in os.environ for var in MPI_PROCESS_MANAGER_VARIABLES):
        return World(0, 1)
    try:
        from mpi4py import MPI
    except ImportError:
        launched = launch_of().world_size
        if launched > 1:
            # Without mpi4py every rank would believe it is rank 0 and redo all the work.
            raise MissingDependencyError(
                "mpi4py", "mpi", f"running under an MPI launcher with {launched} ranks"
            ) from None
        return World(0, 1)
    comm = MPI.COMM_WORLD
    return World(comm.Get_rank(), comm.Get_size(), comm)


# ------------------------------------------------------------------------------------------ Slurm hosts


def expand_hostlist(hostlist: str) -> list[str]:
    """Every host of a Slurm host list, in order, in pure Python: comma-separated items, each literal text and
    bracket groups of numbers and ranges (zero padding kept from the range's first number); several groups in
    one item expand as a product, the first slowest: `rack[1-2]-node[01-02]` → rack1-node01, rack1-node02,
    rack2-node01, rack2-node02; `x1000c0s[1-2]b0n0` → x1000c0s1b0n0, x1000c0s2b0n0."""
    text = hostlist.strip()
    if not re.fullmatch(rf"{_HOST_ITEM}(?:,{_HOST_ITEM})*", text):
        raise ConfigError(f"cannot read the Slurm host list {hostlist!r}; set MASTER_ADDR and MASTER_PORT")
    hosts: list[str] = []
    for item in re.findall(_HOST_ITEM, text):
        choices = [[literal] if literal else _bracket(group, hostlist)
                   for literal, group in re.findall(r"([^\[]+)|\[([^\]]*)\]", item)]
        hosts += ["".join(parts) for parts in itertools.product(*choices)]
    return hosts


def _bracket(group: str, hostlist: str) -> list[str]:
    """The numbers of one bracket group, `001234-001237,001240` → 001234, 001235, 001236, 001237, 001240."""
    numbers: list[str] = []
    for part in group.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ConfigError(f"cannot read {part!r} in the Slurm host list {hostlist!r} (expected N or N-M "
                              f"with N <= M); set MASTER_ADDR and MASTER_PORT")
        low, high = match[1], match[2] or match[1]
        numbers += [f"{i:0{len(low)}d}" for i in range(int(low), int(high) + 1)]
    return numbers


def slurm_hostnames(hostlist: str, scontrol: str | None = None) -> list[str]:
    """Every host of a Slurm host list: `scontrol show hostnames` where Slurm's client is installed (it reads
    every form this Slurm writes), else (or where it refuses the list) `expand_hostlist`."""
    scontrol = scontrol or shutil.which("scontrol")
    if scontrol:
        try:
            done = subprocess.run([scontrol, "show", "hostnames", hostlist], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.split():
            return done.stdout.split()
    return expand_hostlist(hostlist)


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: `gpu[007-010,012],login1` → `gpu007`, `x1000c0s[1-4]b0n0` →
    `x1000c0s1b0n0`."""
    return slurm_hostnames(nodelist)[0]


# ------------------------------------------------------------------------------------------------ devices


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so wall-clock timings cover it (a no-op on CPU)."""
    if device.type == "cuda":
        import torch  # only here: a CUDA device means torch is loaded, and this module stays torch-free

        torch.cuda.synchronize(device)
