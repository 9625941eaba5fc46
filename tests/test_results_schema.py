"""The HDF5 run schema: round trip, atomic writes, and clear errors on damaged files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import hpcq
from hpcq.errors import ConfigError, DataError
from hpcq.results import SCHEMA_VERSION, flatten_config, read_run, write_run

CONFIG = {
    "task": "head",
    "seed": 3,
    "model": {"kind": "quantum", "n_qubits": 10, "layers": 2, "shots": None, "noise": None},
    "train": {"lr": 0.01, "epochs": 3},
    "data": {"splits": [435, 77]},
}


def _write(path, **overrides):
    arguments = dict(
        kind="train",
        config=CONFIG,
        metrics={"train_loss": np.array([0.7, 0.5, 0.4]), "val_accuracy": [0.6, 0.7, 0.8]},
        final={"val_accuracy": 0.8, "test_accuracy": 0.79, "test_size": 9101, "n_trainable_params": 123,
               "best": "epoch2", "shots": None},
        timing={"total_s": 4.5, "epoch_s": np.array([1.5, 1.5, 1.5])},
        energy={"method": "estimate", "joules": 12.5, "devices": ["cpu0", "cpu1"], "device_joules": [6.0, 6.5]},
        extra={"checkpoints": {"epochs": np.arange(3), "nested": {"note": "ok"}}},
        run_id="run-1",
    )
    arguments.update(overrides)
    return write_run(path, **arguments)


def test_round_trip_keeps_every_group(tmp_path):
    path = _write(tmp_path / "sub" / "run.h5")
    record = read_run(path)
    assert record.attrs["hpcq_version"] == hpcq.__version__
    assert record.attrs["schema_version"] == SCHEMA_VERSION
    assert record.run_id == "run-1" and record.kind == "train"
    assert record.attrs["created"].endswith("+00:00")
    assert record.config == CONFIG
    np.testing.assert_allclose(record.metrics["train_loss"], [0.7, 0.5, 0.4])
    np.testing.assert_allclose(record.metrics["val_accuracy"], [0.6, 0.7, 0.8])
    assert record.final == {"val_accuracy": 0.8, "test_accuracy": 0.79, "test_size": 9101,
                            "n_trainable_params": 123, "best": "epoch2", "shots": None}
    assert record.timing["total_s"] == 4.5 and record.timing["epoch_s"].shape == (3,)
    assert record.energy["devices"] == ["cpu0", "cpu1"]
    np.testing.assert_allclose(record.energy["device_joules"], [6.0, 6.5])
    assert record.extra["checkpoints"]["nested"] == {"note": "ok"}
    assert record.env["host"] and record.env["mpi_world_size"] >= 1
    assert record.env["libraries"]["h5py"] == h5py.__version__


def test_final_scalars_are_group_attributes_and_config_is_json_text(tmp_path):
    path = _write(tmp_path / "run.h5")
    with h5py.File(path, "r") as handle:
        assert handle["final"].attrs["test_size"] == 9101
        assert len(handle["final"]) == 0  # no datasets: scalars live in attributes
        assert '"n_qubits": 10' in handle["config"].asstr()[()]


def test_slurm_context_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "424242")
    record = read_run(_write(tmp_path / "run.h5"))
    assert record.env["scheduler"]["SLURM_JOB_ID"] == "424242"


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = _write(tmp_path / "run.h5")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="ragged"):
        _write(path, metrics={"bad": [[1, 2], [3]]})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_config_that_is_not_json_is_rejected_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="JSON"):
        _write(tmp_path / "run.h5", config={"model": object()})
    assert not any(tmp_path.iterdir())


def test_extra_group_cannot_shadow_a_standard_group(tmp_path):
    with pytest.raises(ConfigError, match="final"):
        _write(tmp_path / "run.h5", extra={"final": {"x": 1}})


def test_truncated_file_names_path_and_fix(tmp_path):
    path = _write(tmp_path / "run.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"run\.h5.*delete it and rerun"):
        read_run(path)


def test_foreign_hdf5_file_is_rejected(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = 1
    with pytest.raises(DataError, match="not an hpcq run file"):
        read_run(path)


def test_newer_schema_asks_for_an_upgrade(tmp_path):
    path = _write(tmp_path / "run.h5")
    with h5py.File(path, "r+") as handle:
        handle.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(DataError, match="upgrade hpcq"):
        read_run(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_run(tmp_path / "nope.h5")


def test_flatten_config_gives_dotted_scalar_columns():
    flat = flatten_config(CONFIG)
    assert flat["model.n_qubits"] == 10
    assert flat["train.lr"] == 0.01
    assert flat["model.shots"] is None
    assert flat["data.splits"] == "[435, 77]"
    assert "model" not in flat
