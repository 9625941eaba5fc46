"""The workflow through a real Slurm: the single-node cluster of slurm/local (`.ci/slurm-setup.sh`), the Slurm
executor plugin and the local profile. Skipped with the reason when no Slurm node is idle here."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
from workflow_support import REPO, absolute_run_configs, hpcq_verb_available, load_study, shared_data, write_study

PROFILE = REPO / "slurm" / "profiles" / "local"
# Sentences per split in the test's copy of sst2-sentences: enough for the paper split (256 + 256 drawn
# from the pool), few enough to embed in seconds.
SENTENCES_PER_SPLIT = 350


def slurm_unavailable() -> str | None:
    """Why the Slurm tests cannot run here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm client here; start the single-node cluster with .ci/slurm-setup.sh"
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if result.returncode != 0:
        return f"sinfo failed ({result.stderr.strip()}); start the cluster with slurm/local/start.sh"
    if not {"idle", "mix"} & set(result.stdout.split()):
        return f"no idle Slurm node (states: {result.stdout.split()})"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(slurm_unavailable() is not None, reason=str(slurm_unavailable()))]


def test_srun_starts_two_tasks() -> None:
    result = subprocess.run(["srun", "-n", "2", "hostname"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2


HELLO = """
from mpi4py import MPI
world = MPI.COMM_WORLD
print(world.rank, world.size, world.allreduce(world.rank + 1), flush=True)
"""


def test_mpi4py_under_srun_pmix() -> None:
    result = subprocess.run(
        ["srun", "--mpi=pmix", "-n", "2", sys.executable, "-c", HELLO], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["0 2 3", "1 2 3"]
    # PMIx client and slurmd's server agree on security without help texts (slurm/local/mpi.conf).
    assert "Sorry" not in result.stderr


def run_with_profile(workdir: Path, study: Path, *targets: str, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--profile", str(PROFILE), "--configfile", str(study)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def sst2_subset(folder: Path) -> Path:
    """A source folder holding the first SENTENCES_PER_SPLIT sentences of each sst2-sentences split."""
    subset = folder / "source" / "sst2-sentences"
    subset.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        lines = (shared_data() / "sst2-sentences" / f"stsa.binary.{split}").read_text().splitlines(keepends=True)
        (subset / f"stsa.binary.{split}").write_text("".join(lines[:SENTENCES_PER_SPLIT]))
    return subset.parent


def reduced_smoke(folder: Path) -> dict:
    """The smoke study, shrunk: one seed, one quantum head (Q=4), logistic regression, a 2-rank scaling run;
    embedding on 2 ranks, one shard each."""
    study = absolute_run_configs(load_study("smoke"))
    study["study"] = "reduced"
    study["data"]["source"] = str(sst2_subset(folder))
    study["embed"].update(ranks=2, shard_size=-(-3 * SENTENCES_PER_SPLIT // 2))
    for family in ("quantum_heads", "classical_heads"):
        for experiment in study[family]:
            experiment["seeds"] = [0]
            experiment["grid"] = {key: values[:1] for key, values in experiment["grid"].items()}
    study["quantum_heads"][0]["set"]["train.epochs"] = 5
    study["scaling"] = [{"name": "tiny", "qubits": "4..6", "ranks": [1, 2], "runtime": 5}]
    return study


SMOKE_RUN_CONFIGS = [REPO / e["config"] for family in ("quantum_heads", "classical_heads") for e in load_study("smoke")[family]]
needs_smoke_run_configs = pytest.mark.skipif(
    not all(path.is_file() for path in SMOKE_RUN_CONFIGS),
    reason=f"the smoke study's run configs are not written yet: {[str(p.relative_to(REPO)) for p in SMOKE_RUN_CONFIGS]}",
)


def submitted_job_ids(output: str) -> list[int]:
    return [int(job) for job in re.findall(r"submitted with SLURM jobid (\d+)", output)]


def job_of_rule(output: str, rule: str) -> int:
    """The Slurm job id of the (one) job the plugin submitted for `rule`: its log path names the rule."""
    (job,) = re.findall(rf"submitted with SLURM jobid (\d+) \(log: [^)]*/rule_{rule}/", output)
    return int(job)


def finished_job(job: int) -> str:
    """`scontrol show job` of a finished job (slurm.conf's MinJobAge keeps it visible for 5 minutes)."""
    return subprocess.run(["scontrol", "show", "job", str(job)], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def reduced_workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    workdir = tmp_path_factory.mktemp("slurm-study")
    return workdir, write_study(workdir, reduced_smoke(workdir))


@pytest.mark.slow
@needs_smoke_run_configs
def test_mpi_job_of_two_tasks_through_the_executor(reduced_workdir: tuple[Path, Path]) -> None:
    """Stage on the login node, then embed as one Slurm job of 2 MPI tasks (srun --mpi=pmix), each rank
    writing its own shard."""
    workdir, study = reduced_workdir
    shards = workdir / "data" / "embeddings" / "sst2-sentences" / "packaged"
    result = run_with_profile(workdir, study, str(shards.relative_to(workdir)))
    assert result.returncode == 0, result.stderr[-4000:]
    (job,) = submitted_job_ids(result.stderr)  # staging is a local rule: one submission, the embed job
    shown = finished_job(job)
    assert "NumTasks=2" in shown and "JobState=COMPLETED" in shown, shown
    log = (workdir / "logs" / "reduced" / "embed" / "sst2-sentences" / "packaged.log").read_text()
    assert f"{3 * SENTENCES_PER_SPLIT} sentences" in log and "on 2 rank(s)" in log
    writers = []
    for shard in sorted(shards.glob("*.h5")):
        with h5py.File(shard, "r") as handle:
            writers.append(int(handle.attrs["written_by_rank"]))
    assert writers == [0, 1], writers


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("backend", "quantum-annealer", "scaling[0].backend"),
        ("qubits", "0..4", "scaling[0].qubits"),
        ("source", "/nonexistent/hpcq-data", "data.source"),
    ],
)
def test_bad_study_is_rejected_before_any_submission(tmp_path: Path, key: str, value: str, named: str) -> None:
    """With the Slurm profile too, a bad value stops the workflow when it loads: nothing is staged or submitted."""
    study = {
        "study": "reject",
        "data": {"source": str(shared_data()), "root": "data", "datasets": ["sst2-sentences"]},
        "scaling": [{"name": "small", "qubits": "4..6", "ranks": [1, 2], "backend": "distributed"}],
    }
    (study["data"] if key == "source" else study["scaling"][0])[key] = value
    result = run_with_profile(tmp_path, write_study(tmp_path, study), timeout=120)
    assert result.returncode != 0 and f"study config: {named}:" in result.stderr, result.stderr[-2000:]
    assert not submitted_job_ids(result.stderr) and not (tmp_path / "data").exists()


def complete_result(path: Path) -> bool:
    """A run file that hpcq finished: readable, with its final metrics."""
    with h5py.File(path, "r") as handle:
        return "final" in handle and "run_id" in handle.attrs


@pytest.mark.slow
@needs_smoke_run_configs
@pytest.mark.skipif(
    not (hpcq_verb_available("train") and hpcq_verb_available("bench", "scale") and hpcq_verb_available("report")),
    reason="needs hpcq train, hpcq bench scale and hpcq report",
)
def test_reduced_smoke_study_runs_and_aggregates(reduced_workdir: tuple[Path, Path]) -> None:
    """The rest of the reduced study through Slurm: the two head runs as one group job, the scaling entry as
    a 2-task MPI job, then aggregate, energy and report on the login node."""
    workdir, study = reduced_workdir
    result = run_with_profile(workdir, study)
    assert result.returncode == 0, result.stderr[-4000:]
    shown = finished_job(job_of_rule(result.stderr, "scaling_mpi"))
    assert "NumTasks=2" in shown and "JobState=COMPLETED" in shown, shown
    runs = workdir / "results" / "reduced" / "runs"
    trained = sorted(runs.glob("*_heads/*/*.h5"))
    assert len(trained) == 2 and all(complete_result(run) for run in trained), trained
    # bench scale: a summary plus one file per (qubits, ranks) of qubits 4..6 x ranks 1, 2.
    benchmarks = sorted((runs / "scaling" / "tiny").glob("*.h5"))
    assert (runs / "scaling" / "tiny.h5").is_file() and len(benchmarks) == 3 * 2, benchmarks
    with open(workdir / "results" / "reduced" / "aggregate" / "runs.csv") as table:
        rows = list(csv.DictReader(table))
    assert sorted(row["run_path"] for row in rows) == sorted(
        str(path.relative_to(runs)) for path in [*trained, *benchmarks, runs / "scaling" / "tiny.h5"]
    )
    assert (workdir / "results" / "reduced" / "energy").is_dir()
    report = workdir / "results" / "reduced" / "report" / "report.html"
    assert report.is_file() and "report: results/reduced/report/report.html" in result.stdout + result.stderr


def kill_after_checkpoint(snakemake_log: Path, result: Path, timeout: float) -> tuple[int, int, list[bool]]:
    """Wait for the run's first checkpoint, then `scancel` its job; meanwhile check the result path is never
    visible unfinished. Returns the cancelled job id, the checkpoint's epoch and each sighting's completeness."""
    checkpoint = result.with_name(result.name + ".ckpt")
    sightings = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result.exists():
            sightings.append(complete_result(result))
        jobs = submitted_job_ids(snakemake_log.read_text())
        if checkpoint.exists() and jobs:
            subprocess.run(["scancel", str(jobs[-1])], check=True)
            # hpcq writes checkpoints atomically: whatever is there now is a whole one.
            epoch = torch.load(checkpoint, weights_only=False)["state"].epoch
            return jobs[-1], epoch, sightings
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint {checkpoint} within {timeout} s; see {snakemake_log}")


EPOCHS = 10


@pytest.mark.slow
@needs_smoke_run_configs
@pytest.mark.skipif(not hpcq_verb_available("train"), reason="needs hpcq train")
def test_cancelled_train_job_resumes_from_its_checkpoint(tmp_path: Path, reduced_workdir: tuple[Path, Path]) -> None:
    """scancel a train job after its first checkpoint: the profile's retry resubmits it, hpcq train --resume
    continues from the checkpoint, and the result file is never visible half-written."""
    study = reduced_smoke(tmp_path)
    # The module's staged data and embeddings (made there, or by this run when the test runs alone).
    study["data"]["root"] = str(reduced_workdir[0] / "data")
    study.update(classical_heads=[], scaling=[])
    heads = study["quantum_heads"][0]
    heads["grid"] = {"model.n_qubits": [8]}
    # Seconds per epoch, and no early stop: the job is still running when it is cancelled.
    heads["set"].update({"model.layers": 2, "train.epochs": EPOCHS, "train.patience": EPOCHS})
    study_path = write_study(tmp_path, study)
    result = tmp_path / "results" / "reduced" / "runs" / "quantum_heads" / "qubits" / "n_qubits-8_seed-0.h5"
    snakemake_log = tmp_path / "snakemake.out"
    command = [sys.executable, "-m", "snakemake", str(result.relative_to(tmp_path)), "-s",
               str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path), "--profile", str(PROFILE),
               "--configfile", str(study_path)]
    with snakemake_log.open("w") as out:
        workflow = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        cancelled, checkpoint_epoch, sightings = kill_after_checkpoint(snakemake_log, result, timeout=600)
        while workflow.poll() is None:
            if result.exists():
                sightings.append(complete_result(result))
            time.sleep(0.2)
    output = snakemake_log.read_text()
    assert workflow.returncode == 0, output[-4000:]
    jobs = submitted_job_ids(output)
    assert cancelled in jobs and jobs[-1] != cancelled, "the cancelled job was not resubmitted"
    assert all(sightings) and complete_result(result)
    assert not result.with_name(result.name + ".ckpt").exists()
    with h5py.File(result, "r") as handle:
        assert handle["final"].attrs["epochs_run"] == EPOCHS
    # The resubmitted job's log (it replaces the first one's): its progress bar starts where the checkpoint was.
    log = (tmp_path / "logs" / "reduced" / "train" / "quantum_heads" / "qubits" / "n_qubits-8_seed-0.log").read_text()
    started_at = int(re.search(rf"train:.*?\|\s*(\d+)/{EPOCHS} ", log)[1])
    assert started_at >= max(1, checkpoint_epoch), log[:2000]
