"""Which physical GPU a rank meters: torch's `cuda:N` is the Nth GPU the rank sees, NVML and AMD SMI number all
of the node's GPUs. The mapping is a pure function of the launcher's and runtime's environment variables and
the management library's UUIDs, so the cases of a DGX node and a Frontier node are written out here as facts."""

from __future__ import annotations

import pytest

from hpcq.energy.devices import logical_gpu, physical_gpu
from hpcq.errors import ConfigError
from hpcq.runtime import node_local_rank

DGX = [f"GPU-{i}a3f{i}c2e-1b2c-4d5e-8f90-{i:012d}" for i in range(8)]  # NVML's UUIDs, NVML order
FRONTIER = [f"GPU-{i:02d}5d1a8e3b7c6f4" for i in range(8)]  # 4 MI250X = 8 GCDs, AMD SMI order


@pytest.mark.parametrize("rank", range(4))
def test_one_gpu_per_task_each_rank_meters_its_own_gpu(rank: int) -> None:
    """srun --gpus-per-task=1 sets CUDA_VISIBLE_DEVICES=<rank's GPU>: every rank's torch device is cuda:0."""
    environ = {"SLURM_LOCALID": str(rank), "SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": "4",
               "CUDA_VISIBLE_DEVICES": str(rank)}
    logical = logical_gpu(node_local_rank(environ), visible=1)
    assert logical == 0 and physical_gpu(logical, "nvidia", environ, DGX) == rank


def test_visible_devices_reorder_and_name_gpus_by_uuid_prefix() -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "6,GPU-2a3f2c2e,1"}
    assert [physical_gpu(i, "nvidia", environ, DGX) for i in range(3)] == [6, 2, 1]
    assert physical_gpu(5, "nvidia", {}, DGX) == 5


def test_torch_uuid_decides_over_cuda_ordering() -> None:
    """Without CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA may number GPUs otherwise than NVML: the UUID torch reports
    for the device (no GPU- prefix) is where it is."""
    assert physical_gpu(0, "nvidia", {}, DGX, logical_uuid=DGX[3].removeprefix("GPU-")) == 3


def test_frontier_rocr_then_hip_visible_devices() -> None:
    gcd6 = {"ROCR_VISIBLE_DEVICES": "4,5,6,7", "HIP_VISIBLE_DEVICES": "2"}
    assert physical_gpu(0, "amd", gcd6, FRONTIER) == 6
    assert physical_gpu(1, "amd", {"ROCR_VISIBLE_DEVICES": "1,3", "CUDA_VISIBLE_DEVICES": "1,0"}, FRONTIER) == 1
    assert physical_gpu(0, "amd", {"ROCR_VISIBLE_DEVICES": "GPU-075d1a8e3b7c6f4"}, FRONTIER) == 7
    # ROCm ignores nothing of HIP's: CUDA_VISIBLE_DEVICES is read only when HIP_VISIBLE_DEVICES is unset
    assert physical_gpu(0, "amd", {"HIP_VISIBLE_DEVICES": "3", "CUDA_VISIBLE_DEVICES": "5"}, FRONTIER) == 3


def test_node_local_rank_not_global_rank_picks_the_gpu() -> None:
    """Two ranks per node on 4-GPU nodes: job rank 3 is the second rank of node 1 and takes its GPU 1 (the job
    rank would give 3, a GPU no rank of that node should share with the energy meter of another)."""
    environ = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1",
               "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert logical_gpu(node_local_rank(environ), visible=4) == 1


@pytest.mark.parametrize("logical, environ, message", [
    (0, {"CUDA_VISIBLE_DEVICES": "MIG-1b2c"}, "CUDA_VISIBLE_DEVICES entry 'MIG-1b2c' matches 0"),
    (0, {"CUDA_VISIBLE_DEVICES": "9"}, "CUDA_VISIBLE_DEVICES names device 9 but only 8"),
    (1, {"CUDA_VISIBLE_DEVICES": "2"}, "cuda:1 is not among the 1 GPU"),
    (0, {"CUDA_VISIBLE_DEVICES": ""}, "cuda:0 is not among the 0 GPU"),
])
def test_unmappable_device_is_one_line_naming_it(logical: int, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        physical_gpu(logical, "nvidia", environ, DGX)
    assert "\n" not in str(error.value)


def test_no_visible_gpu_says_so() -> None:
    with pytest.raises(ConfigError, match="no GPU is visible"):
        logical_gpu(0, visible=0)
