"""`hpcq doctor`: what works on this machine, and for what doesn't, why and what to install; for GPUs and MPI,
which path a job started here would take (`path: ...` rows, from the `auto` choices' own functions) and why."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass


@dataclass
class Check:
    name: str
    usable: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _module_version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as err:  # a broken install is worth reporting, not crashing on
        return f"broken ({err.__class__.__name__}: {err})"


def _python_package(name: str, module: str, extra: str, purpose: str) -> Check:
    version = _module_version(module)
    if version is None:
        return Check(name, False, f"{module} is not installed ({purpose})", f"pip install 'hpcq[{extra}]'")
    if version.startswith("broken"):
        return Check(name, False, f"{module} {version}", f"reinstall: pip install --force-reinstall 'hpcq[{extra}]'")
    return Check(name, True, f"{module} {version} ({purpose})")


def _torch_devices() -> list[Check]:
    import torch

    checks = [Check("torch", True, f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")]
    if torch.cuda.is_available():
        kind = "ROCm" if torch.version.hip else "CUDA"
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("gpu (torch)", True, f"{kind}: {names}"))
    else:
        checks.append(Check("gpu (torch)", False, "no CUDA or ROCm device visible to torch",
                            "on a GPU node install a CUDA or ROCm build of torch before hpcq "
                            "(e.g. pip install torch --index-url <your site's wheel index>)"))
    return checks


def _mpi() -> list[Check]:
    checks = [_python_package("mpi4py", "mpi4py", "mpi", "MPI data parallelism and the distributed backend")]
    launcher = shutil.which("mpiexec") or shutil.which("mpirun") or shutil.which("srun")
    if launcher:
        checks.append(Check("mpi launcher", True, launcher))
    else:
        checks.append(Check("mpi launcher", False, "no mpiexec, mpirun or srun on PATH",
                            "pip install 'hpcq[mpi]' (ships Open MPI's mpiexec) or load your site's MPI module"))
    return checks


def _slurm() -> Check:
    sinfo = shutil.which("sinfo")
    if not sinfo:
        return Check("slurm", False, "sinfo not found: studies run with Snakemake's local executor",
                     "on a cluster load the Slurm client; for a single-node test cluster run slurm/local/start.sh")
    try:
        state = subprocess.run([sinfo, "-h", "-o", "%P %a %D %t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return Check("slurm", False, "sinfo timed out: slurmctld is not answering", "start slurmctld / check munge")
    if state.returncode != 0:
        return Check("slurm", False, f"sinfo failed: {state.stderr.strip()[:200]}",
                     "start munged and slurmctld (slurm/local/start.sh on a test machine)")
    return Check("slurm", True, "partitions: " + "; ".join(state.stdout.split("\n")[:4]).strip())


def _gpu_libraries() -> list[Check]:
    return [
        _python_package("cuquantum (custatevec, cutensornet)", "cuquantum", "gpu", "backends custatevec/tensornet"),
        _python_package("cupy", "cupy", "gpu", "GPU arrays for cuQuantum"),
        _python_package("nvml (energy)", "pynvml", "gpu", "NVIDIA energy counters"),
    ]


def _aer_gpu() -> Check:
    try:
        from qiskit_aer import AerSimulator
    except ImportError:
        return Check("backend aer on GPU", False, "qiskit-aer is not installed", "pip install 'hpcq[aer-gpu]'")
    devices = AerSimulator().available_devices()
    if "GPU" in devices:
        return Check("backend aer on GPU", True, "qiskit-aer sees a GPU (device='GPU', cuStateVec)")
    return Check("backend aer on GPU", False, f"this qiskit-aer runs on {', '.join(devices)} only",
                 "on an NVIDIA machine: pip uninstall -y qiskit-aer && pip install 'hpcq[aer-gpu]' in its own "
                 "environment, or the hpcq-aer-gpu image")


#: run in a child process: MPI_Init on a login node can abort the process that calls it (Cray PMI)
_MPI_QUERY = ("import json; from mpi4py import MPI; from hpcq.sim.distributed.exchange import mpi_cuda_aware; "
              "aware, how = mpi_cuda_aware(); print(json.dumps([MPI.get_vendor()[0], aware, how]))")


def _mpi_facts() -> tuple[str, bool, str] | str:
    """(MPI vendor, CUDA-aware, how that was found), or why MPI could not be asked here."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'hpcq[mpi]')"
    try:
        done = subprocess.run([sys.executable, "-c", _MPI_QUERY], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "MPI_Init did not return within 60 s here"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"MPI could not start here: {last[:200]}"
    vendor, aware, how = json.loads(done.stdout.splitlines()[-1])
    return vendor, aware, how


def _gpu_paths() -> list[Check]:
    """Which GPU and MPI path a job started here would take, and why (the `auto` choices' own functions)."""
    import torch

    from hpcq.energy.devices import logical_gpu, physical_gpu_of
    from hpcq.energy.meter import open_sampler
    from hpcq.errors import HpcqError
    from hpcq.runtime import node_local_rank
    from hpcq.sim.accelerator import accelerator_of, cuquantum_installed
    from hpcq.sim.distributed.exchange import ExchangeFacts, choose_exchange
    from hpcq.sim.tensornet import choose_contractor

    accelerator = accelerator_of(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    checks, metered = [], None
    if accelerator != "cpu":
        local = node_local_rank()
        logical = logical_gpu(local, torch.cuda.device_count())
        try:
            metered = physical_gpu_of(logical)
            where = f"{'NVML' if accelerator == 'nvidia' else 'AMD SMI'} device {metered}" if metered is not None \
                else "no NVML / AMD SMI device (no GPU energy counter)"
            checks.append(Check("path: this rank's GPU", True, f"node-local rank {local} -> torch cuda:{logical} -> "
                                f"{where}, which its energy is metered on"))
        except HpcqError as err:
            checks.append(Check("path: this rank's GPU", False, str(err), "fix the visible-device variables"))
    custatevec = accelerator == "nvidia" and cuquantum_installed("cuquantum.bindings.custatevec")
    cutensornet = custatevec and cuquantum_installed("cuquantum.tensornet")
    contractor, why = choose_contractor("auto", accelerator, cutensornet)
    checks.append(Check("path: tensornet contractor=auto", True, f"{contractor}: {why}"))
    mpi = _mpi_facts()
    if isinstance(mpi, str):
        checks.append(Check("path: distributed exchange=auto", False, f"one rank only: {mpi}",
                            "pip install 'hpcq[mpi]' or load the site's MPI and mpi4py"))
    else:
        vendor, aware, how = mpi
        choice, why = choose_exchange("auto", ExchangeFacts(accelerator, custatevec, vendor, aware, how, True, 1))
        fix = ("a CUDA-aware MPI (Open MPI built with CUDA/UCX, or the site's) lets cuStateVec swap GPU to GPU"
               if choice == "mpi" and custatevec else "")
        checks.append(Check("path: distributed exchange=auto", True, f"{choice} ({why}); MPI: {how}", fix))
    try:
        sampler = open_sampler("auto", None if metered is None else [metered])
        checks.append(Check("path: energy method=auto", True, f"{sampler.method}: {'; '.join(sampler.devices)}"))
    except HpcqError as err:
        checks.append(Check("path: energy method=auto", False, str(err), "pip install 'hpcq[gpu]' (NVML)"))
    return checks


#: (qubits, batch, gradient) doctor shows backend="auto"'s choice for: the paper head's training step, one
#: large state forward and with its gradient, and a batch beyond this machine's memory
AUTO_SHAPES = ((14, 435, True), (24, 1, False), (24, 1, True), (34, 64, False))


def _auto_backend() -> list[Check]:
    """What backend="auto" takes here for `AUTO_SHAPES` of the re-uploading ansatz, float32, and why."""
    import torch

    from hpcq.circuits import reuploading_ansatz
    from hpcq.sim.auto import call_facts, choose_backend

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    checks = []
    for qubits, batch, gradient in AUTO_SHAPES:
        circuit = reuploading_ansatz(qubits, 1, 1, 1)
        weights = torch.zeros(circuit.n_weights, device=device, requires_grad=gradient)
        name, why = choose_backend(call_facts(circuit, weights, torch.zeros(batch, qubits, device=device)))
        checks.append(Check(f"path: backend=auto, {qubits} qubits, batch {batch}, "
                            f"{'forward+gradient' if gradient else 'forward'}", True, f"{name}: {why}"))
    return checks


def _compiled_kernel() -> Check:
    from hpcq.sim.kernel import kernel_status

    usable, detail = kernel_status()
    fix = "" if usable else ("install a C compiler with OpenMP (apt-get install gcc, or module load gcc) or set CC; "
                             "until then real circuits run on the slower PyTorch path")
    return Check("statevector compiled kernels", usable, detail, fix)


def diagnose() -> list[Check]:
    """Every check, usable or not, in a stable order."""
    checks = _torch_devices()
    checks.append(Check("backend statevector", True, "PyTorch, CPU" + (" and GPU" if checks[1].usable else "")))
    checks.append(_compiled_kernel())
    checks += _auto_backend()
    checks.append(_python_package("backend aer", "qiskit_aer", "test", "reference simulator, noise, shots"))
    checks.append(_aer_gpu())
    checks += _mpi()
    checks += _gpu_libraries()
    checks += _gpu_paths()
    checks.append(_python_package("pennylane (bench peer)", "pennylane", "bench", "hpcq bench head --peer"))
    checks.append(_python_package("snakemake", "snakemake", "test", "the study workflow"))
    checks.append(_slurm())
    checks.append(Check("apptainer", bool(shutil.which("apptainer")),
                        shutil.which("apptainer") or "apptainer not on PATH (containers are optional)",
                        "" if shutil.which("apptainer") else "module load apptainer on clusters that provide it"))
    data_root = os.environ.get("HPCQ_DATA", "./data")
    checks.append(Check("data root", os.path.isdir(data_root), f"HPCQ_DATA={data_root}",
                        "" if os.path.isdir(data_root) else "set HPCQ_DATA or run `hpcq stage --source <dir>`"))
    return checks


def render(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="hpcq doctor")
    table.add_column("component")
    table.add_column("ok")
    table.add_column("detail")
    table.add_column("to enable")
    for check in checks:
        table.add_row(escape(check.name), "yes" if check.usable else "[red]no[/red]", escape(check.detail),
                      escape(check.fix))
    Console().print(table)
