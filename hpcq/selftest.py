"""`hpcq selftest --gpu`: every GPU path of hpcq once, on the GPU node it runs on, within 8 minutes on one
H100/H200, written as one JSON + markdown summary.

Each part is a separate process with its own time limit (a hang is killed with its process group, and the
next part runs): the `gpu`-marked tests, `bench head` on the GPU against the CPU kernels, `bench scale` at
28-30 qubits through torch and cuStateVec (each run's fraction of the GPU copy bandwidth measured in the same
run), tensornet on the GPU with gradients against the CPU, Aer on the GPU against Aer on the CPU, and the
NVML / AMD SMI energy of one pass on the rank's physical GPU. On AMD GPUs (ROCm) the parts that need
cuQuantum or NVIDIA are skipped with the reason, as the `auto` choices never take cuQuantum there.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcq.errors import ConfigError
from hpcq.outputs import check_output_folder

#: the acceptance budget on one H100/H200; the parts' limits add up to it
TOTAL_LIMIT_S = 480
TAIL_CHARS = 3000
#: the checkout's tests (hpcq is installed editable, `pip install -e`, wherever the self-test runs)
TESTS = Path(__file__).resolve().parents[1] / "tests"


@dataclass(frozen=True)
class Part:
    """One step of the self-test: `command` (argv, `{out}` replaced by the output folder) under `limit_s`, checked
    against `reference`; `needs` is "gpu", "nvidia" or "cuquantum" (NVIDIA with cuquantum-python)."""

    name: str
    what: str
    reference: str
    command: tuple[str, ...]
    limit_s: int
    needs: str = "gpu"


def _hpcq(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "hpcq", *args)


def _check(function: str) -> tuple[str, ...]:
    return (sys.executable, "-c", f"from hpcq.selftest import {function}; {function}()")


def _scale(backend: str) -> tuple[str, ...]:
    return _hpcq("bench", "scale", "--qubits", "28..30", "--ranks", "1", "--backend", backend, "--device", "cuda",
                 "--min-seconds", "1", "--out", f"{{out}}/scale-{backend}.h5", "--json")


def _head(device: str) -> tuple[str, ...]:
    return _hpcq("bench", "head", "--qubits", "14", "--batch", "435", "--device", device, "--min-seconds", "2",
                 "--json")


PARTS = (
    Part("gpu-tests", "every test marked gpu: custatevec, distributed on 2 ranks (mpi and custatevec exchanges), "
         "cuTensorNet values and gradients, Aer on GPU, NVML / AMD SMI counters",
         "each test's CPU reference (statevector backend, torch contractor, Aer CPU); a test that cannot run "
         "here skips and says why",
         (sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "--timeout", "120",
          "--junitxml", "{out}/gpu-tests.xml", str(TESTS)), 150),
    Part("bench-head-cpu", "bench head Q=14, batch 435, forward+gradient on the CPU kernels",
         "the CPU side of the next part, same circuit", _head("cpu"), 40),
    Part("bench-head-cuda", "bench head Q=14, batch 435, forward+gradient on the GPU (torch)",
         "samples/s against bench-head-cpu", _head("cuda"), 40),
    Part("bench-scale-torch", "bench scale 28..30 qubits, one GPU, statevector backend (torch)",
         "the GPU's copy bandwidth measured in the same run (bandwidth_fraction)", _scale("statevector"), 75),
    Part("bench-scale-custatevec", "bench scale 28..30 qubits, one GPU, custatevec backend",
         "the GPU's copy bandwidth measured in the same run (bandwidth_fraction)", _scale("custatevec"), 75,
         "cuquantum"),
    Part("tensornet", "tensornet Q=30 on the GPU, contractor auto (cuTensorNet on NVIDIA, torch on ROCm), "
         "values and gradients", "the torch contractor on the CPU (1e-10 values, 1e-8 gradients)",
         _check("check_tensornet"), 40),
    Part("aer-gpu", "Aer on the GPU (cuStateVec), 20 qubits", "Aer on the CPU (1e-10)", _check("check_aer_gpu"),
         30, "nvidia"),
    Part("energy", "NVML / AMD SMI energy of one statevector pass at 28 qubits, on this rank's physical GPU",
         "the physical index from torch's device UUID / visible-device variables", _check("check_energy"), 30),
)
assert sum(p.limit_s for p in PARTS) <= TOTAL_LIMIT_S


def gpu_facts() -> dict[str, Any]:
    """What decides which parts can run: the accelerator torch sees and whether cuquantum-python imports."""
    import torch

    from hpcq.sim.accelerator import accelerator_of, cuquantum_installed

    if not torch.cuda.is_available():
        return {"accelerator": "cpu", "devices": [], "cuquantum": False}
    accelerator = accelerator_of(torch.device("cuda"))
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    cuquantum = accelerator == "nvidia" and cuquantum_installed("cuquantum.bindings.custatevec")
    return {"accelerator": accelerator, "devices": names, "cuquantum": cuquantum}


def skip_reason(part: Part, facts: dict[str, Any]) -> str | None:
    """Why `part` cannot run on a machine with `facts`, or None when it can."""
    if facts["accelerator"] == "cpu":
        return "no GPU visible to torch"
    if part.needs in ("nvidia", "cuquantum") and facts["accelerator"] != "nvidia":
        return f"needs an NVIDIA GPU; this is {facts['accelerator']} (cuQuantum and Aer-GPU are NVIDIA-only)"
    if part.needs == "cuquantum" and not facts["cuquantum"]:
        return "cuquantum-python is not installed (pip install 'hpcq[gpu]')"
    return None


def dry_run_listing(out: Path) -> str:
    """What `hpcq selftest --gpu --out OUT` would run, part by part, with its limit and its reference."""
    lines = [f"hpcq selftest --gpu --out {out}: {len(PARTS)} parts, {sum(p.limit_s for p in PARTS)} s of limits "
             f"in all (each part killed at its own limit); summary in {out}/selftest.json and {out}/selftest.md"]
    for number, part in enumerate(PARTS, 1):
        command = shlex.join(a.replace("{out}", str(out)) for a in part.command)
        needs = {"gpu": "any GPU", "nvidia": "NVIDIA GPU",
                 "cuquantum": "NVIDIA GPU + cuquantum-python"}[part.needs]
        lines += [f"{number}. {part.name} (limit {part.limit_s} s, needs {needs}): {part.what}",
                  f"   against: {part.reference}", f"   runs: {command}"]
    lines.append("Without a GPU it refuses to run; on AMD GPUs (ROCm) the cuQuantum and Aer-GPU parts are skipped "
                 "with the reason, and tensornet's contractor auto takes torch.")
    return "\n".join(lines)


def _last_json(text: str) -> dict[str, Any] | None:
    """The last line of `text` that is a JSON object (what the part printed as its result)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def run_part(part: Part, out: Path) -> dict[str, Any]:
    """Run one part in its own process group, killed at its limit; its status, seconds, result and tail."""
    command = [a.replace("{out}", str(out)) for a in part.command]
    log = out / f"{part.name}.log"
    start = time.perf_counter()
    with open(log, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = process.wait(timeout=part.limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the part and whatever it started (mpiexec, ranks)
            process.wait()
            code = None
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    result = _last_json(text)
    if code is None:
        status = "timed out"
    elif code != 0:
        status = "failed"
    else:
        status = "skipped" if result and "skipped" in result else "passed"
    return {"name": part.name, "status": status, "seconds": round(seconds, 1), "limit_s": part.limit_s,
            "exit_code": code, "result": result, "log": str(log), "tail": text[-TAIL_CHARS:] if status != "passed"
            else "", "what": part.what, "reference": part.reference, "command": shlex.join(command)}


def _headline(row: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    """The part's numbers in one markdown cell."""
    result = row.get("result") or {}
    if row["status"] == "skipped":
        return row.get("skip_reason") or result.get("skipped", "")
    if row["status"] != "passed":
        return (row["tail"].strip().splitlines() or ["(no output)"])[-1][:200]
    if row["name"].startswith("bench-head"):
        text = f"{result['samples_per_s']:.0f} samples/s"
        cpu = (rows.get("bench-head-cpu") or {}).get("result")
        if row["name"] == "bench-head-cuda" and cpu:
            text += f" ({result['samples_per_s'] / cpu['samples_per_s']:.1f}x the CPU kernels)"
        return text
    if row["name"].startswith("bench-scale"):
        return "; ".join(f"n={r['n_qubits']}: {r['time_per_pass_s'] * 1e3:.2f} ms/pass, "
                         f"{r['bandwidth_fraction']:.0%} of copy {r['copy_gbps']:.0f} GB/s"
                         for r in result["runs"])
    if row["name"] == "gpu-tests":
        return row.get("counts", "")
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())


def _pytest_counts(log: Path) -> str:
    """pytest's closing line ("3 passed, 2 skipped in 40.1s")."""
    lines = [line.strip("= ") for line in log.read_text(errors="replace").splitlines() if " in " in line
             and ("passed" in line or "failed" in line or "skipped" in line)]
    return lines[-1] if lines else ""


def write_summary(summary: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """selftest.json and selftest.md in `out`."""
    rows = {row["name"]: row for row in summary["parts"]}
    table = ["| part | status | seconds / limit | result |", "|---|---|---|---|"]
    for row in summary["parts"]:
        cell = _headline(row, rows).replace("|", "\\|")
        table.append(f"| {row['name']} | {row['status']} | {row['seconds']} / {row['limit_s']} | {cell} |")
    markdown = "\n".join([
        f"# hpcq selftest --gpu: {'passed' if summary['passed'] else 'FAILED'}", "",
        f"{summary['host']}, {summary['accelerator']}: {', '.join(summary['devices'])}; "
        f"cuquantum-python: {'yes' if summary['cuquantum'] else 'no'}; started {summary['started']}, "
        f"{summary['seconds']:.0f} s in all", "", *table, "",
        "Logs: one `<part>.log` per part in this folder; commands in selftest.json.", ""])
    (out / "selftest.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "selftest.md").write_text(markdown)
    return out / "selftest.json", out / "selftest.md"


def run_selftest(out: Path, say=print) -> dict[str, Any]:
    """Every part on this GPU node (ConfigError without a GPU); the summary is written to `out`."""
    facts = gpu_facts()
    if facts["accelerator"] == "cpu":
        raise ConfigError("hpcq selftest --gpu needs a GPU and torch sees none here (CPU-only torch, or no GPU "
                          "visible); run it on a GPU node, or add --dry-run to list what it would run")
    check_output_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    begin = time.perf_counter()
    rows = []
    for part in PARTS:
        reason = skip_reason(part, facts)
        if reason:
            rows.append({"name": part.name, "status": "skipped", "seconds": 0.0, "limit_s": part.limit_s,
                         "skip_reason": reason, "what": part.what, "reference": part.reference})
        else:
            say(f"{part.name} (limit {part.limit_s} s) ...")
            rows.append(run_part(part, out))
            if part.name == "gpu-tests":
                rows[-1]["counts"] = _pytest_counts(Path(rows[-1]["log"]))
        say(f"  {rows[-1]['status']} ({rows[-1]['seconds']} s)")
    summary = {"host": platform.node(), **facts, "started": started,
               "seconds": time.perf_counter() - begin,
               "passed": all(r["status"] in ("passed", "skipped") for r in rows),
               "parts": rows}
    write_summary(summary, out)
    return summary


# ------------------------------------------------------------------------------ checks run as their own part


def _report(result: dict[str, Any]) -> None:
    print(json.dumps(result, default=float), flush=True)


def check_tensornet() -> None:
    """Q=30 tensornet on the GPU (contractor auto) against the torch contractor on the CPU: values, gradients."""
    import torch

    from hpcq.circuits import reuploading_ansatz
    from hpcq.sim import expectation
    from hpcq.sim.accelerator import accelerator_of, cuquantum_installed
    from hpcq.sim.tensornet import choose_contractor

    circuit = reuploading_ansatz(30, 2, 1, 1)
    generator = torch.Generator().manual_seed(30)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator)
    features = torch.randn(2, circuit.n_features, dtype=torch.float64, generator=generator)
    labels = ["I" * 29 + "Z", "Z" + "I" * 29]

    def run(device: str) -> list[torch.Tensor]:
        w = weights.to(device).requires_grad_()
        x = features.to(device).requires_grad_()
        values = expectation(circuit, w, x, labels, backend="tensornet")
        return [t.detach().cpu() for t in (values, *torch.autograd.grad(values.sum(), (w, x)))]

    accelerator = accelerator_of(torch.device("cuda"))
    contractor, why = choose_contractor("auto", accelerator, accelerator == "nvidia"
                                        and cuquantum_installed("cuquantum.tensornet"))
    gpu, cpu = run("cuda"), run("cpu")
    errors = [float((a - b).abs().max()) for a, b in zip(gpu, cpu)]
    _report({"contractor": contractor, "value_error": errors[0], "weight_grad_error": errors[1],
             "feature_grad_error": errors[2], "why": why})
    assert errors[0] < 1e-10 and max(errors[1:]) < 1e-8, f"GPU and CPU disagree: {errors}"


def check_aer_gpu() -> None:
    """Aer on the GPU against Aer on the CPU at 20 qubits (exact expectation values)."""
    import torch
    from qiskit_aer import AerSimulator

    from hpcq.circuits import reuploading_ansatz
    from hpcq.sim import expectation

    if "GPU" not in AerSimulator().available_devices():
        _report({"skipped": "this qiskit-aer has no GPU build: run it where hpcq[aer-gpu] is installed "
                            "(containers/hpcq-aer-gpu.def)"})
        return
    circuit = reuploading_ansatz(20, 1, 2, 1)
    generator = torch.Generator().manual_seed(20)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, generator=generator)
    features = torch.randn(2, circuit.n_features, dtype=torch.float64, generator=generator)
    labels = ["I" * 19 + "Z", "X" + "I" * 19]
    gpu = expectation(circuit, weights, features, labels, backend="aer", device="GPU")
    cpu = expectation(circuit, weights, features, labels, backend="aer", device="CPU")
    error = float((gpu - cpu).abs().max())
    _report({"max_abs_difference": error})
    assert error < 1e-10, f"Aer GPU and CPU disagree by {error:.2e}"


def check_energy() -> None:
    """Joules of one 28-qubit statevector forward on this rank's GPU, from its physical NVML / AMD SMI counter."""
    import torch

    from hpcq.circuits import reuploading_ansatz
    from hpcq.energy.devices import logical_gpu, physical_gpu_of
    from hpcq.energy.meter import EnergyMeter
    from hpcq.runtime import node_local_rank
    from hpcq.sim import expectation

    index = logical_gpu(node_local_rank(), torch.cuda.device_count())
    physical = physical_gpu_of(index)
    method = "amdsmi" if torch.version.hip else "nvml"
    device = torch.device("cuda", index)
    circuit = reuploading_ansatz(28, 1, 1, 1)
    weights = torch.rand(circuit.n_weights, device=device)
    features = torch.rand(1, circuit.n_features, device=device)
    passes = 0
    with torch.no_grad(), EnergyMeter(method, interval_s=0.05, devices=None if physical is None else [physical],
                                      sync=torch.cuda.synchronize) as meter:
        begin = time.perf_counter()
        while time.perf_counter() - begin < 2.0:  # counters refresh every 20-100 ms: meter many passes
            expectation(circuit, weights, features, ["I" * 27 + "Z"])
            passes += 1
    reading = meter.reading
    _report({"method": reading.method, "device": ", ".join(reading.devices), "torch_device": str(device),
             "physical_index": physical, "joules_per_pass": reading.joules / passes,
             "mean_watts": reading.mean_watts,
             "passes": passes})
    assert reading.joules > 0, f"{reading.method} counted no energy over {passes} passes"
