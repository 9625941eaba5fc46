"""The study workflow without Slurm: lint, dry runs of every shipped study against the jobs the study
engine (hpcq.study) expands them into, the shell commands of a grid, and a bad study file rejected before
any job runs, naming the key. The engine's own checks and expansion are tested directly in test_study.py."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import pytest
from hpcq.study import load_study
from workflow_support import (
    REPO,
    STUDIES,
    STUDY_SCHEMA,
    head_study,
    job_counts,
    scaling_only,
    snakemake,
    write_study,
)
from workflow_support import load_study as read_study


def expected_jobs(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Job counts of a shipped study: the engine's runs, shards and scaling entries, one job each, by rule."""
    monkeypatch.chdir(REPO)  # the shipped studies' paths are relative to the repository root
    config = read_study(name)
    study = load_study(config, [], STUDY_SCHEMA)
    jobs: Counter[str] = Counter()
    for family, experiments in study.experiments.items():
        for experiment in experiments.values():
            mpi = family == "adapters" and experiment.spec["ranks"] > 1
            jobs["adapters_mpi" if mpi else family] += len(experiment.runs)
    shards = study.prepared.values()
    jobs.update("embed" if prepared.key == "data.embeddings_dir" else "tokenize" for prepared in shards)
    jobs["stage"] = len(config["data"]["datasets"]) if study.paths.data_source else 0
    jobs.update("scaling_mpi" if max(entry["ranks"]) > 1 else "scaling" for entry in study.scaling.values())
    jobs.update(aggregate=1, energy=int("energy" in config), report=int(config["report"]), all=1)
    return {rule: count for rule, count in jobs.items() if count}


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.stem)
def test_lint_is_clean(study: Path) -> None:
    result = snakemake(REPO, "--lint", "--configfile", str(study))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.stem)
def test_dry_run_of_every_study(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --forceall: count every job of the study, whatever outputs earlier runs left in the checkout.
    result = snakemake(REPO, "-n", "--forceall", "--configfile", str(study), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert job_counts(result.stdout) == expected_jobs(study.stem, monkeypatch)


def test_default_study_is_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    result = snakemake(REPO, "-n", "--forceall")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert job_counts(result.stdout) == expected_jobs("smoke", monkeypatch)


def test_bad_study_value_rejected_before_any_job(tmp_path: Path) -> None:
    # What `hpcq bench scale` itself refuses (issue 13): a rank count that is not a power of two.
    study = scaling_only(tmp_path)
    study["scaling"][0]["ranks"] = [1, 3]
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(write_study(tmp_path, study)))
    assert result.returncode != 0
    refusal = "study config: scaling[0].ranks: --ranks 3 is not a power of two"
    assert refusal in result.stderr, result.stderr[-2000:]
    assert not any((tmp_path / folder).exists() for folder in ("data", "results", "logs"))


def test_grid_expands_to_one_train_command_per_point_and_seed(tmp_path: Path) -> None:
    study = head_study(tmp_path, {"model.n_qubits": [4, 6], "train.lr": [0.1, 0.01]}, {"model.layers": 1})
    result = snakemake(tmp_path, "-n", "-p", "--configfile", str(write_study(tmp_path, study)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if " hpcq train " in line]
    points = set()
    for command in commands:
        words = shlex.split(command.split("; ", 1)[1])
        overrides = dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--set")
        assert overrides["model.layers"] == "1" and "--resume" in words
        assert overrides["data.embeddings_dir"].endswith("embeddings/sst2-sentences/packaged")
        point = (overrides["model.n_qubits"], overrides["train.lr"], overrides["seed"])
        out = words[words.index("--out") + 1]
        assert out.endswith(f"n_qubits-{point[0]}_lr-{point[1]}_seed-{point[2]}.h5")
        points.add(point)
    assert len(commands) == len(points) == 8
    assert points == {(q, lr, s) for q in ("4", "6") for lr in ("0.1", "0.01") for s in ("0", "1")}


def test_duplicate_key_in_a_study_file_names_the_key_and_file(tmp_path: Path) -> None:
    path = write_study(tmp_path, scaling_only(tmp_path))
    path.write_text(path.read_text() + "report: true\nreport: false\n")
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(path))
    assert result.returncode != 0
    assert f"study config: study file {path} is not valid YAML" in result.stderr, result.stderr[-2000:]
    assert "key 'report' appears twice" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_learning_rate_written_with_an_exponent_is_a_number(tmp_path: Path) -> None:
    study = head_study(tmp_path, {"train.lr": [1e-3]})
    path = write_study(tmp_path, study)
    # As a person writes it; YAML 1.1 reads a string.
    path.write_text(path.read_text().replace("0.001", "1e-3"))
    result = snakemake(tmp_path, "-n", "-p", "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--set train.lr=1e-3" in result.stdout
