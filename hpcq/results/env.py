"""The `env/` group of a run file: where and with what a run ran, collected without side effects.

Nothing here imports torch or mpi4py (importing mpi4py would initialise MPI): their facts are taken only
when the caller has already imported them.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

import psutil

from hpcq.energy.devices import gpu_names
from hpcq.runtime import launch_of

KEY_LIBRARIES = (
    "numpy", "h5py", "torch", "qiskit", "qiskit-aer", "pennylane", "mpi4py", "cuquantum-python-cu12",
    "cupy-cuda12x", "nvidia-ml-py", "amdsmi", "transformers", "sentence-transformers", "peft",
    "scikit-learn", "pandas",
)
SCHEDULER_VARIABLES = (
    "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NODELIST", "SLURM_NNODES",
    "SLURM_NTASKS", "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION", "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "OMP_NUM_THREADS",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on (absent ones are left out)."""
    versions = {}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def mpi_world_size() -> int:
    """MPI world size: from mpi4py if the program already initialised MPI, else the launcher's."""
    mpi4py = sys.modules.get("mpi4py.MPI")
    if mpi4py is not None and mpi4py.Is_initialized() and not mpi4py.Is_finalized():
        return int(mpi4py.COMM_WORLD.Get_size())
    return launch_of().world_size


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_env() -> dict[str, Any]:
    """Host, devices, versions and scheduler context of this process."""
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "memory_bytes": int(psutil.virtual_memory().total),
        "mpi_world_size": mpi_world_size(),
        "gpu_devices": ", ".join(gpu_names()),
        "libraries": library_versions(),
        "scheduler": {name: os.environ[name] for name in SCHEDULER_VARIABLES if name in os.environ},
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch_threads"] = int(torch.get_num_threads())
    return env
