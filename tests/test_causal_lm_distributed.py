"""Causal-LM training over several ranks on CPUs (gloo): data parallel (DDP) and sharded (FSDP) runs over 2 ranks
end with the same adapter weights, losses and generated answers as 1 rank with the same global batch; a
checkpoint written by 2 ranks resumes on 1, and one written by 1 rank resumes sharded on 2; the launcher's
environment (torchrun, mpiexec, srun) is read right."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from causal_lm_support import write_tiny_llama
from safetensors.torch import load_file

from hpcq.results import read_run
from hpcq.train.causal_lm import train_causal_lm, weights_path
from hpcq.train.config import validate_config

TOLERANCE = 1e-5

# Rank 0..1 under torchrun: the process group comes from hpcq's own init; each run: config, output, stop_after,
# resume.
TORCHRUN_SCRIPT = r"""
import json, sys
from hpcq.train.causal_lm import train_causal_lm
from hpcq.train.distributed import init_distributed
ctx = init_distributed("cpu")
for config, out, stop_after, resume in json.loads(open(sys.argv[1]).read()):
    train_causal_lm(config, out, resume=resume, progress=False, stop_after=stop_after)
ctx.close()
"""

# Each rank reports what init_distributed made of its launcher, and an all-reduce over the group.
LAUNCH_SCRIPT = r"""
import json
from hpcq.train.distributed import init_distributed
ctx = init_distributed("cpu")
print(json.dumps({"rank": ctx.rank, "size": ctx.world_size, "launcher": ctx.launcher, "backend": ctx.backend,
                  "sum": ctx.sum([ctx.rank + 1.0])[0]}), flush=True)
ctx.close()
"""


def quiet_env() -> dict[str, str]:
    """One thread per rank (the machine has 2 cores); Open MPI allowed as root, not busy-polling."""
    return dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_mpi_yield_when_idle="1")


def run_config(model: Path, strategy: str = "auto") -> dict:
    """4 steps of a global batch of 6 rows (3 per rank in micro-batches of 2), 3 answers generated."""
    return validate_config({
        "task": "causal_lm", "model": {"name": str(model), "precision": "fp32"},
        "data": {"train_subset": 32, "max_length": 256}, "adapter": {"axes": [4, 4, 4]},
        "train": {"lr": 0.003, "max_steps": 4, "batch_size": 6, "micro_batch_size": 2, "threads": 1,
                  "device": "cpu"},
        "distributed": {"strategy": strategy},
        "eval": {"tasks": ["gsm8k"], "subset": 3, "max_new_tokens": 8, "batch_size": 2},
        "energy": {"method": "estimate"}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 rank: 2 of 4 steps of an FSDP run (checkpoint only). Under torchrun with 2 ranks: that checkpoint resumed
    sharded, DDP stopped after 2 of 4 steps (checkpoint only), DDP and FSDP to the end. Then on 1 rank: the run
    unbroken, and the 2-rank checkpoint resumed."""
    folder = tmp_path_factory.mktemp("distributed")
    model = write_tiny_llama(folder / "tiny")
    ddp, fsdp = run_config(model), run_config(model, "fsdp")
    assert train_causal_lm(fsdp, folder / "fsdp-resumed.h5", progress=False, stop_after=2) is None
    jobs = [[fsdp, str(folder / "fsdp-resumed.h5"), None, True], [ddp, str(folder / "resumed.h5"), 2, False],
            [ddp, str(folder / "ddp.h5"), None, False], [fsdp, str(folder / "fsdp.h5"), None, False]]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    (folder / "script.py").write_text(TORCHRUN_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(folder / "script.py"), str(folder / "jobs.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=quiet_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert Path(str(folder / "resumed.h5") + ".ckpt").is_file() and not (folder / "resumed.h5").exists()
    train_causal_lm(ddp, folder / "single.h5", progress=False)
    train_causal_lm(ddp, folder / "resumed.h5", resume=True, progress=False)  # 1 rank, from the 2-rank checkpoint
    return folder


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddp", "fsdp", "resumed", "fsdp-resumed"])
def test_two_ranks_match_one_rank(runs: Path, name: str) -> None:
    reference, other = read_run(runs / "single.h5"), read_run(runs / f"{name}.h5")
    expected = {"ddp": (2, "ddp"), "fsdp": (2, "fsdp"), "resumed": (1, "none"), "fsdp-resumed": (2, "fsdp")}[name]
    assert (other.final["world_size"], other.final["strategy"]) == expected
    assert reference.final["world_size"] == 1
    np.testing.assert_allclose(other.metrics["step_loss"], reference.metrics["step_loss"], rtol=0, atol=TOLERANCE)
    weights, single = load_file(weights_path(runs / f"{name}.h5")), load_file(weights_path(runs / "single.h5"))
    assert set(weights) == set(single) and len(single) == 24
    for key, value in single.items():
        assert float((weights[key] - value).abs().max()) <= TOLERANCE, key
    # The comparison means something: the gates moved far more than the tolerance.
    moved = max(float((single[k] - single[k.replace("quanta_gates.", "quanta_frozen_")]).abs().max())
                for k in single if ".quanta_gates." in k)
    assert moved > 100 * TOLERANCE
    # Generation split over 2 ranks (FSDP: synchronised steps) returns the 1-rank answers in the same order.
    assert list(other.extra["eval"]["gsm8k"]["generated"]) == list(reference.extra["eval"]["gsm8k"]["generated"])


def launched(command: list[str]) -> list[dict]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=quiet_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return sorted((json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")),
                  key=lambda report: report["rank"])


@pytest.mark.mpi
def test_mpiexec_ranks_find_rank_zero_over_mpi() -> None:
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    reports = launched(["mpiexec", "-n", "2", "--oversubscribe", *root, sys.executable, "-c", LAUNCH_SCRIPT])
    assert [(r["rank"], r["size"], r["launcher"], r["backend"], r["sum"]) for r in reports] == [
        (0, 2, "mpi", "gloo", 3.0), (1, 2, "mpi", "gloo", 3.0)]


def slurm_unavailable() -> str | None:
    if shutil.which("srun") is None:
        return "no srun here"
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        return "Slurm is not running (slurm/local/start.sh)"
    return None


@pytest.mark.slurm
@pytest.mark.skipif(slurm_unavailable() is not None, reason=str(slurm_unavailable()))
def test_srun_ranks_find_rank_zero_from_the_step_node_list() -> None:
    reports = launched(["srun", "-n", "2", sys.executable, "-c", LAUNCH_SCRIPT])
    assert [(r["rank"], r["size"], r["launcher"], r["sum"]) for r in reports] == [
        (0, 2, "slurm", 3.0), (1, 2, "slurm", 3.0)]
