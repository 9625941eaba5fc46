"""The `hpcq` command: verbs, doctor, and the head benchmark's JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys


def hpcq(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcq", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_one_verb_per_workflow_step():
    done = hpcq("--help")
    assert done.returncode == 0
    for verb in ("doctor", "bench"):
        assert verb in done.stdout


def test_doctor_reports_every_component_with_a_fix_when_unusable():
    checks = json.loads(hpcq("doctor", "--json").stdout)
    names = {c["name"] for c in checks}
    assert {"torch", "backend statevector", "backend aer", "mpi4py", "slurm"} <= names
    assert all(c["fix"] for c in checks if not c["usable"])


def test_bench_head_json_against_pennylane():
    done = hpcq("bench", "head", "--qubits", "4", "--layers", "1", "--connectivity", "2", "--reuploads", "1",
                "--batch", "4", "--peer", "pennylane", "--min-seconds", "0.2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["samples_per_s"] > 0 and report["peer_samples_per_s"] > 0
    assert abs(report["ratio"] - report["samples_per_s"] / report["peer_samples_per_s"]) < 1e-9
    assert report["max_abs_difference"] < 1e-3


def test_user_errors_exit_2_with_one_line():
    done = hpcq("bench", "head", "--qubits", "3", "--connectivity", "5")
    assert done.returncode == 2
    assert "connectivity=5 must be between 1 and n_qubits-1=2" in done.stderr
    assert "Traceback" not in done.stderr


def test_device_cuda_without_a_usable_gpu_is_one_line_naming_the_option(tmp_path):
    """With no GPU visible (a CPU-only torch, or CUDA_VISIBLE_DEVICES empty) every --device verb stops before
    any work, instead of torch's AssertionError "Torch not compiled with CUDA enabled"."""
    import os

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    for verb in (["bench", "head", "--qubits", "2"], ["bench", "scale", "--qubits", "2..3", "--out", str(tmp_path / "s.h5")],
                 ["embed", "--out-dir", str(tmp_path / "e")]):
        done = subprocess.run([sys.executable, "-m", "hpcq", *verb, "--device", "cuda"], capture_output=True,
                              text=True, timeout=300, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().startswith("hpcq: error: --device cuda: ") and "use --device cpu" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.h5"))


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    """Issue 13 finding 5: an output folder that is a file, or lies under one, and a result path that is a
    folder failed only once the embedding, tokenizing or benchmark was done."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["embed", "--out-dir", str(a_file)], f"--out-dir {str(a_file)!r}: {a_file} is a file, not a folder"),
        (["tokenize", "--task", "SST-2", "--out-dir", str(a_file / "tokens")], f"{a_file} is a file, not a folder"),
        (["bench", "scale", "--qubits", "2..3", "--out", str(tmp_path)], f"--out {str(tmp_path)!r} is a folder"),
        (["bench", "adapters", "--out", str(a_file / "adapters")], f"{a_file} is a file, not a folder"),
    ]
    for args, message in cases:
        done = hpcq(*args, timeout=300)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing computed, nothing written
