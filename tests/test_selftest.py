"""`hpcq selftest --gpu`: its listing, its refusal without a GPU, which parts an AMD node skips, and the part
runner itself (real processes: a hang is killed at its limit and the next part still runs, a failure is kept
with its output, a result line is read), which is all of it that can run without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hpcq.selftest import PARTS, TOTAL_LIMIT_S, Part, run_part, skip_reason, write_summary


def _hpcq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcq", *args], capture_output=True, text=True, timeout=120)


def test_dry_run_lists_every_part_with_its_limit_and_reference(tmp_path: Path) -> None:
    done = _hpcq("selftest", "--gpu", "--dry-run", "--out", str(tmp_path / "st"))
    assert done.returncode == 0, done.stderr
    for part in PARTS:
        assert f"{part.name} (limit {part.limit_s} s" in done.stdout
    assert "--qubits 14 --batch 435 --device cuda" in done.stdout and "--qubits 28..30" in done.stdout
    assert not (tmp_path / "st").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the self-test would run")
def test_without_a_gpu_the_run_refuses_in_one_line(tmp_path: Path) -> None:
    done = _hpcq("selftest", "--gpu", "--out", str(tmp_path / "st"))
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "needs a GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "st").exists()


def test_parts_fit_the_eight_minute_budget() -> None:
    assert sum(p.limit_s for p in PARTS) <= TOTAL_LIMIT_S == 480
    assert {"gpu-tests", "bench-head-cuda", "bench-scale-torch", "bench-scale-custatevec", "tensornet", "aer-gpu",
            "energy"} <= {p.name for p in PARTS}


def test_amd_node_skips_cuquantum_and_aer_gpu_parts_only() -> None:
    frontier = {"accelerator": "amd", "devices": ["AMD Instinct MI250X"], "cuquantum": True}
    skipped = {p.name for p in PARTS if skip_reason(p, frontier)}
    assert skipped == {"bench-scale-custatevec", "aer-gpu"}
    dgx_without_extra = {"accelerator": "nvidia", "devices": ["NVIDIA H100"], "cuquantum": False}
    assert {p.name for p in PARTS if skip_reason(p, dgx_without_extra)} == {"bench-scale-custatevec"}


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_a_hanging_part_is_killed_at_its_limit_and_the_others_are_kept(tmp_path: Path) -> None:
    hang = run_part(Part("hang", "sleeps", "-", _python("import time; print('started', flush=True); time.sleep(60)"),
                         1), tmp_path)
    good = run_part(Part("good", "answers", "-", _python("print('noise'); print('{\"error\": 1.5e-12}')"), 30),
                    tmp_path)
    bad = run_part(Part("bad", "fails", "-", _python("raise SystemExit('GPU and CPU disagree: [0.1]')"), 30),
                   tmp_path)
    assert hang["status"] == "timed out" and hang["seconds"] < 15 and "started" in hang["tail"]
    assert good["status"] == "passed" and good["result"] == {"error": 1.5e-12}
    assert bad["status"] == "failed" and bad["exit_code"] == 1 and "disagree" in bad["tail"]
    summary = {"host": "h", "accelerator": "nvidia", "devices": ["NVIDIA H100"], "cuquantum": True,
               "started": "now", "seconds": 3.0, "passed": False, "parts": [hang, good, bad]}
    json_path, markdown_path = write_summary(summary, tmp_path)
    markdown = markdown_path.read_text()
    assert "FAILED" in markdown and "| hang | timed out | " in markdown and "error 1.5e-12" in markdown
    assert "GPU and CPU disagree: [0.1]" in markdown
    assert json.loads(json_path.read_text())["parts"][1]["result"] == {"error": 1.5e-12}
