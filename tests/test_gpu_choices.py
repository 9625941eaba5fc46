"""The `auto` choices of GPU paths, on CPU, by handing the choice functions the facts of other machines (an
NVIDIA node with and without CUDA-aware MPI, a Frontier-like AMD node with cuquantum-python installed): the
exchange of the distributed backend and the tensornet contractor. The CUDA-aware query itself runs against
this machine's real MPI library."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from hpcq.sim.accelerator import accelerator_of
from hpcq.sim.distributed.exchange import ExchangeFacts, choose_exchange
from hpcq.sim.tensornet import choose_contractor

DGX = ExchangeFacts(accelerator="nvidia", custatevec=True, mpi_vendor="Open MPI", cuda_aware=True,
                    cuda_aware_how="Open MPI 5.0.6: MPIX_Query_cuda_support() = 1", spans_world=True, batch=4)


def test_auto_exchange_takes_custatevec_only_when_everything_it_needs_holds() -> None:
    choice, why = choose_exchange("auto", DGX)
    assert choice == "custatevec" and "MPIX_Query_cuda_support() = 1" in why


@pytest.mark.parametrize("change, because", [
    ({"cuda_aware": False, "cuda_aware_how": "Open MPI 5.0.11: MPIX_Query_cuda_support() = 0"},
     "MPI is not known to be CUDA-aware: Open MPI 5.0.11: MPIX_Query_cuda_support() = 0"),
    ({"accelerator": "amd"}, "AMD GPU (ROCm): cuStateVec runs on NVIDIA GPUs only"),
    ({"accelerator": "cpu"}, "the state is in host memory"),
    ({"custatevec": False}, "cuquantum-python is not installed"),
    ({"mpi_vendor": "Intel MPI"}, "not Intel MPI"),
    ({"spans_world": False}, "not MPI_COMM_WORLD"),
    ({"batch": 3}, "batch 3 is not a power of two"),
])
def test_auto_exchange_stages_through_host_memory_and_says_why(change: dict, because: str) -> None:
    choice, why = choose_exchange("auto", replace(DGX, **change))
    assert choice == "mpi" and why.startswith("host-staged mpi4py exchange: ") and because in why


def test_frontier_never_reaches_for_cuquantum_even_when_installed() -> None:
    frontier = replace(DGX, accelerator="amd", mpi_vendor="MPICH", cuda_aware=True)
    assert choose_exchange("auto", frontier)[0] == "mpi"
    assert choose_contractor("auto", "amd", cutensornet=True)[0] == "torch"


def test_named_exchange_and_contractor_are_honoured() -> None:
    assert choose_exchange("mpi", DGX)[0] == "mpi"
    assert choose_exchange("custatevec", replace(DGX, cuda_aware=False))[0] == "custatevec"
    assert choose_contractor("cutensornet", "cpu", cutensornet=False)[0] == "cutensornet"


@pytest.mark.parametrize("accelerator, installed, expected, because", [
    ("nvidia", True, "cutensornet", "NVIDIA GPU"),
    ("nvidia", False, "torch", "cuquantum-python is not installed"),
    ("amd", True, "torch", "AMD GPU (ROCm)"),
    ("cpu", True, "torch", "on the CPU"),
])
def test_auto_contractor(accelerator: str, installed: bool, expected: str, because: str) -> None:
    choice, why = choose_contractor("auto", accelerator, installed)
    assert choice == expected and because in why


def test_cpu_tensors_are_on_the_cpu_accelerator() -> None:
    assert accelerator_of(torch.device("cpu")) == "cpu"


def test_cuda_aware_query_answers_for_this_machines_mpi() -> None:
    """The real query (MPIX_Query_cuda_support in the libmpi mpi4py loaded), in a fresh process since it
    initializes MPI: this machine's Open MPI has no CUDA, so it must say no, and name the call it made."""
    pytest.importorskip("mpi4py")
    code = "import json; from hpcq.sim.distributed.exchange import mpi_cuda_aware; print(json.dumps(mpi_cuda_aware()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    aware, how = json.loads(done.stdout.splitlines()[-1])
    if torch.cuda.is_available():
        pytest.skip(f"a GPU node: its MPI answered {aware} ({how})")
    assert aware is False and ("MPIX_Query_cuda_support() = 0" in how or "MPICH_GPU_SUPPORT_ENABLED" in how)


def test_doctor_names_the_path_a_job_here_takes_and_why() -> None:
    done = subprocess.run([sys.executable, "-m", "hpcq", "doctor", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = {c["name"]: c for c in json.loads(done.stdout) if c["name"].startswith("path: ")}
    assert {"path: tensornet contractor=auto", "path: distributed exchange=auto", "path: energy method=auto"} <= set(paths)
    if torch.cuda.is_available():
        pytest.skip("a GPU node: the choices depend on its GPU (hpcq selftest --gpu checks them there)")
    assert paths["path: tensornet contractor=auto"]["detail"].startswith("torch: the tensors are on the CPU")
    exchange = paths["path: distributed exchange=auto"]
    if exchange["usable"]:  # mpi4py is installed: MPI was asked whether it is CUDA-aware
        assert exchange["detail"].startswith("mpi (host-staged mpi4py exchange: the state is in host memory)")
        assert "MPIX_Query_cuda_support() = 0" in exchange["detail"] or "MPICH_GPU_SUPPORT_ENABLED" in exchange["detail"]
