"""`aggregate` / `hpcq aggregate`: one row per run, damaged files listed and skipped, never fatal."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from hpcq.cli import app
from hpcq.errors import ConfigError
from hpcq.results import write_run
from hpcq.results.aggregate import aggregate, load_aggregate
from results_synthetic import QUBITS, SEEDS, write_bench_scale, write_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    paths = write_study(root / "runs") + write_bench_scale(root / "runs")
    truncated = root / "runs" / "nested" / "truncated.h5"
    truncated.parent.mkdir()
    truncated.write_bytes(paths[0].read_bytes()[:2048])
    (root / "runs" / "notes.txt").write_text("not a run")
    return root, paths


def test_every_readable_run_is_one_row_and_the_truncated_one_is_skipped(study, tmp_path):
    root, paths = study
    result = aggregate(root / "runs", tmp_path / "agg", progress=False)
    assert len(result.runs) == len(paths)
    assert result.skipped["path"].tolist() == ["nested/truncated.h5"]
    assert "delete it and rerun" in result.skipped["reason"].iloc[0]
    assert set(result.runs["run_kind"]) == {"train", "bench_scale"}
    for column in ("model.n_qubits", "model.kind", "train.lr", "seed", "final.test_accuracy",
                   "final.time_per_pass_s", "energy.joules", "energy.method", "timing.total_s", "env.host"):
        assert column in result.runs.columns, column
    quantum = result.runs[result.runs["model.kind"] == "quantum"]
    assert sorted(quantum["model.n_qubits"].unique()) == list(QUBITS)
    assert len(quantum) == len(QUBITS) * 2 * len(SEEDS)


def test_tables_on_disk_match_and_read_back(study, tmp_path):
    root, _ = study
    out = tmp_path / "agg"
    result = aggregate(root / "runs", out, progress=False)
    for name in ("runs.parquet", "runs.csv", "curves.parquet", "curves.csv", "skipped.csv"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "runs.csv")) == len(result.runs)
    assert pd.read_csv(out / "skipped.csv")["path"].tolist() == ["nested/truncated.h5"]
    loaded = load_aggregate(out)
    pd.testing.assert_frame_equal(loaded.runs, result.runs, check_dtype=False)
    epochs = result.curves[(result.curves["metric"] == "val_accuracy")].groupby("run_id")["step"].max()
    assert (epochs == 3).all()  # 4 epochs per training run


def test_mixed_value_types_in_one_column_still_write_parquet(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a.h5", kind="train", config={"model": {"noise": None}}, final={"test_accuracy": 0.8})
    write_run(runs / "b.h5", kind="train", config={"model": {"noise": "depolarizing"}}, final={"test_accuracy": 0.7})
    write_run(runs / "c.h5", kind="train", config={"model": {"noise": 0.01}}, final={"test_accuracy": 0.75})
    result = aggregate(runs, tmp_path / "agg", progress=False)
    assert sorted(map(str, result.runs["model.noise"].dropna())) == ["0.01", "depolarizing"]


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        aggregate(tmp_path / "nope", tmp_path / "agg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no run files"):
        aggregate(tmp_path / "empty", tmp_path / "agg")


def test_cli_writes_table_and_main_effects_plot_and_lists_the_skipped_file(study, tmp_path):
    root, _ = study
    out = tmp_path / "agg"
    result = CliRunner().invoke(app, ["aggregate", str(root / "runs"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "truncated.h5" in result.output and "skipped 1" in result.output
    assert "quantum (layers=2, n_qubits=8) - logreg" in result.output
    for name in ("runs.parquet", "runs.csv", "main_effects.png", "main_effects.svg", "main_effects.csv",
                 "anova.csv", "paired_differences.csv", "selection.csv", "scaling.png", "learning_curves.svg"):
        assert (out / name).is_file(), name


def test_cli_on_benchmark_runs_only(tmp_path):
    write_bench_scale(tmp_path / "runs")
    result = CliRunner().invoke(app, ["aggregate", str(tmp_path / "runs"), "--out", str(tmp_path / "agg")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "agg" / "runs.csv").is_file()


def test_cli_error_is_one_line_and_exit_code_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hpcq", "aggregate", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no run files" in done.stderr


def test_a_copied_or_linked_run_file_is_counted_once_and_listed(tmp_path):
    runs = tmp_path / "runs"
    original = write_run(runs / "a.h5", kind="train", config={"seed": 0}, final={"test_accuracy": 0.8})
    write_run(runs / "b.h5", kind="train", config={"seed": 1}, final={"test_accuracy": 0.7})
    (runs / "backup").mkdir()
    (runs / "backup" / "a.h5").write_bytes(original.read_bytes())  # the same run, copied
    (runs / "z_link.h5").symlink_to(runs / "b.h5")  # the same file, found twice
    result = aggregate(runs, tmp_path / "agg", progress=False)
    assert sorted(result.runs["run_path"]) == ["a.h5", "b.h5"]
    assert result.runs["final.test_accuracy"].mean() == pytest.approx(0.75)
    assert sorted(result.skipped["path"]) == ["backup/a.h5", "z_link.h5"]
    reasons = dict(zip(result.skipped["path"], result.skipped["reason"]))
    assert "as a.h5, a copy of the same run; counted once" in reasons["backup/a.h5"]
    output = CliRunner().invoke(app, ["aggregate", str(runs), "--out", str(tmp_path / "cli")]).output
    assert "aggregated 2 runs" in output and "backup/a.h5: same run_id" in output
