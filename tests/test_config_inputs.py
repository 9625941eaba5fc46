"""Bad run configs and `--set` values (issue 13): each stops `hpcq train` with one line naming the value and the
fix, before any work; `--set train.lr=1e-3` is a number."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hpcq.errors import ConfigError
from hpcq.train.config import load_config
from hpcq.yamlfile import parse_yaml

REPO = Path(__file__).resolve().parents[1]
LOGREG = str(REPO / "config" / "runs" / "logreg.yaml")


def train(tmp_path: Path, config: str, *overrides: str) -> subprocess.CompletedProcess:
    sets = [arg for value in overrides for arg in ("--set", value)]
    command = [sys.executable, "-m", "hpcq", "train", "--config", config, *sets, "--out", str(tmp_path / "r.h5")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert not (Path(done.args[-1])).exists()
    return lines[0]


def test_duplicate_key_in_a_run_config_names_the_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text("task: head\nmodel:\n  kind: logreg\ntrain:\n  lr: 0.1\n  lr: 0.5\n")
    line = one_line_error(train(tmp_path, str(config)))
    assert f"run config {config}" in line and "key 'lr' appears twice" in line and "line 6" in line


def test_latin1_run_config_is_named_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("# évaluation\ntask: head\n".encode("latin-1"))
    line = one_line_error(train(tmp_path, str(config)))
    assert f"run config {config} is not UTF-8 text (byte 0xe9" in line and "save it as UTF-8" in line


def test_unparsable_override_names_the_override(tmp_path: Path) -> None:
    line = one_line_error(train(tmp_path, LOGREG, "model.n_qubits=[1,"))
    assert "override 'model.n_qubits=[1,' is not valid YAML" in line and "fix the value" in line


def test_float_for_an_integer_field_is_refused_before_training(tmp_path: Path) -> None:
    line = one_line_error(train(tmp_path, LOGREG, "train.batch_size=8.0"))
    assert "train.batch_size: 8.0 is not of type 'integer'" in line


def test_exponent_without_a_dot_is_a_number_and_strings_stay_strings() -> None:
    config = load_config(LOGREG, ["train.lr=1e-3", "data.split=paper", "model.kind=logreg"])
    assert config["train"]["lr"] == pytest.approx(1e-3) and isinstance(config["train"]["lr"], float)
    assert config["data"]["split"] == "paper"
    assert parse_yaml("[5E+2, -2e3, 1.5, 12, 1e, abc]", "test") == [500.0, -2000.0, 1.5, 12, "1e", "abc"]


def test_duplicate_keys_inside_an_override_value_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"override 'model.extra=\{a: 1, a: 2\}'.*key 'a' appears twice"):
        load_config(LOGREG, ["model.extra={a: 1, a: 2}"])


def test_yaml_merge_keys_may_still_override() -> None:
    assert parse_yaml("base: &b {x: 1}\nrun:\n  <<: *b\n  x: 2\n", "test")["run"] == {"x": 2}
