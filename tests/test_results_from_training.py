"""`hpcq aggregate` on runs made by `hpcq train` itself (not synthetic files): 2 seeds x 2 qubit counts x 2
learning rates of the quantum head plus logistic-regression baselines on real MiniLM embeddings of real SST-2
sentences, and a truncated copy of one run that must be reported and skipped."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hpcq.cli import app
from hpcq.train.config import load_config
from hpcq.train.head import train_head
# the 260-sentence shards fixture and, autouse, the data root of those sentences that the runs check them against
from test_train_head import SMALL, shard_dir, subset_root  # noqa: F401

SEEDS = (0, 1)
QUBITS = (3, 4)
LEARNING_RATES = (0.02, 0.1)


def run_config(shard_dir: Path, seed: int, lr: float = SMALL["train"]["lr"], **model) -> dict:
    return {**SMALL, "seed": seed, "data": {**SMALL["data"], "embeddings_dir": str(shard_dir)},
            "model": {**SMALL["model"], **model}, "train": {**SMALL["train"], "epochs": 2, "lr": lr}}


def validated(raw: dict, folder: Path) -> dict:
    """Through the same YAML + schema path as `hpcq train --config`."""
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.fixture(scope="module")
def trained_runs(shard_dir, tmp_path_factory) -> Path:  # noqa: F811
    scratch = tmp_path_factory.mktemp("trained")
    runs = scratch / "runs"
    for seed in SEEDS:
        for qubits in QUBITS:
            for lr in LEARNING_RATES:
                config = validated(run_config(shard_dir, seed, lr, n_qubits=qubits), scratch)
                train_head(config, runs / f"quantum_q{qubits}_lr{lr}_s{seed}.h5", progress=False)
        train_head(validated(run_config(shard_dir, seed, kind="logreg"), scratch), runs / f"logreg_s{seed}.h5",
                   progress=False)
    (runs / "broken").mkdir()
    (runs / "broken" / "truncated.h5").write_bytes((runs / "logreg_s0.h5").read_bytes()[:4096])
    return runs


def test_aggregate_of_real_training_runs(trained_runs, tmp_path):
    out = tmp_path / "agg"
    result = CliRunner().invoke(app, ["aggregate", str(trained_runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "broken/truncated.h5" in result.output and "skipped 1" in result.output

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == len(SEEDS) * (len(QUBITS) * len(LEARNING_RATES) + 1)
    quantum = runs[runs["model.kind"] == "quantum"]
    assert sorted(quantum["model.n_qubits"].unique()) == list(QUBITS)
    assert sorted(quantum["train.lr"].unique()) == list(LEARNING_RATES)
    assert quantum["final.test_accuracy"].between(0, 1).all() and (quantum["final.test_size"] == 180).all()

    effects = pd.read_csv(out / "main_effects.csv")
    assert {"model.n_qubits", "train.lr"} <= set(effects["column"]), effects.head()
    for name in ("runs.parquet", "main_effects.png", "main_effects.svg", "paired_differences.csv",
                 "learning_curves.svg", "skipped.csv"):
        assert (out / name).is_file(), name
    assert pd.read_csv(out / "skipped.csv")["path"].tolist() == ["broken/truncated.h5"]
