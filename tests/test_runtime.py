"""The one launcher rule (`hpcq.runtime`): rank, world size, node-local rank and launcher for every way a job
starts its ranks, including mpiexec inside a Slurm job (its daemons are srun tasks, so the Slurm variables
the ranks inherit count daemons, not ranks) and torchrun under srun; and the MPI world without a process
manager."""

from __future__ import annotations

import sys

import pytest

from hpcq.errors import MissingDependencyError
from hpcq.runtime import Launch, World, detect_launch, first_host, launch_of, mpi_world, node_local_rank

SRUN_PORT = 20000 + (1234 * 7) % 20000


@pytest.mark.parametrize(
    ("env", "launch"),
    [
        ({}, Launch()),
        ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"},
         Launch(3, 8, 1, "torchrun", "n1", 29500)),
        ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "6", "OMPI_COMM_WORLD_LOCAL_RANK": "1"},
         Launch(5, 6, 1, "mpi")),
        # srun step: rank 0's node from the step's node list, a port all ranks derive from job and step ids
        ({"SLURM_PROCID": "6", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "2", "SLURM_JOB_ID": "1234",
          "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_NTASKS": "8"},
         Launch(6, 8, 2, "slurm", "gpu007", SRUN_PORT)),
        # the batch script of a Slurm job is not a step: one rank, whatever SLURM_NTASKS says
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "1234"}, Launch()),
        ({"PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1"}, Launch(1, 4, 1, "mpi")),
        # MPICH's mpiexec in a 2-node job: hydra proxies are srun tasks (one per node), rank 6 is on node 1
        ({"PMI_RANK": "6", "PMI_SIZE": "8", "MPI_LOCALRANKID": "2", "SLURM_PROCID": "1",
          "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0", "SLURM_STEP_NODELIST": "gpu[007-008]"},
         Launch(6, 8, 2, "mpi")),
        # Open MPI's mpiexec in a 2-node job: prted daemons are srun tasks
        ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
          "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0"},
         Launch(5, 8, 1, "mpi")),
        # srun --mpi=pmi2 / cray_shasta set PMI's variables themselves: srun launched, rank 0 its first node
        ({"PMI_RANK": "6", "PMI_SIZE": "8", "PMI_LOCAL_RANK": "2", "SLURM_PROCID": "6",
          "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "2", "SLURM_JOB_ID": "1234",
          "SLURM_STEP_NODELIST": "gpu[007-008]"},
         Launch(6, 8, 2, "slurm", "gpu007", SRUN_PORT)),
        # Cray PALS mpiexec (PBS): PMI's rank and size, PALS's node-local rank
        ({"PMI_RANK": "17", "PMI_SIZE": "32", "PALS_RANKID": "17", "PALS_LOCAL_RANKID": "5"},
         Launch(17, 32, 5, "mpi")),
        # torchrun under srun (one agent per node): the workers' variables, not the agents'
        ({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu007", "MASTER_PORT": "29500",
          "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0"},
         Launch(5, 8, 1, "torchrun", "gpu007", 29500)),
    ],
    ids=["single", "torchrun", "openmpi", "srun-step", "slurm-batch", "pmi", "hydra-in-slurm",
         "openmpi-in-slurm", "srun-pmi2", "cray-pals", "torchrun-in-srun"],
)
def test_detect_launch(env: dict[str, str], launch: Launch) -> None:
    assert detect_launch(env) == launch
    assert node_local_rank(env) == launch.local_rank


def test_launch_of_reads_only_the_environment() -> None:
    """`launch_of` (what mpi_world and the run files' env use) looks up no Slurm host: no address for srun."""
    env = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "gpu[007-008]"}
    assert launch_of(env) == Launch(1, 2, 0, "slurm")


def test_first_host_of_a_slurm_node_list() -> None:
    assert first_host("gpu[007-010,012],login1") == "gpu007"
    assert first_host("node12") == "node12"
    assert first_host("a100-[3,5]") == "a100-3"


def test_mpi_world_without_a_process_manager_is_one_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun and plain srun wire no MPI process manager in: mpi4py is not even imported."""
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert mpi_world() == World(0, 1)


def test_mpi_world_without_mpi4py_under_several_ranks_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """srun --mpi=pmix sets no size variable: the step's size still says every rank would redo the work."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setenv("PMIX_RANK", "0")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    with pytest.raises(MissingDependencyError, match="4 ranks"):
        mpi_world()
