"""Issue 13 finding 3: a run whose loss turns NaN or infinite stops with an error naming the step and the rate
to check, and writes no result. The head and joint trainers share `hpcq.train.loop.train_epoch` (tested through
`hpcq train` in test_train_head.py); GLUE and causal-LM fine-tuning have their own loops, tested here."""

from __future__ import annotations

from pathlib import Path

import pytest
from causal_lm_support import write_tiny_llama
from test_causal_lm import run_config
from test_glue_train import config as glue_config
from test_glue_tokens import small_glue

from hpcq.train.causal_lm import train_causal_lm
from hpcq.train.config import validate_config
from hpcq.train.glue import train_glue
from hpcq.train.loop import TrainingDiverged


def test_a_diverged_glue_run_stops_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCQ_DATA", str(small_glue(tmp_path / "data", "SST-2", {"train": 48, "dev": 8})))
    out = tmp_path / "run.h5"
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step \d+: the run diverged; check train.lr=1e\+30"):
        train_glue(glue_config(tmp_path, "lora", epochs=2, lr=1e30), out, progress=False)
    assert not out.exists()


def test_a_diverged_causal_lm_run_stops_and_writes_nothing(tmp_path: Path) -> None:
    tiny = write_tiny_llama(tmp_path / "tiny-llama")
    out = tmp_path / "run.h5"
    with pytest.raises(TrainingDiverged, match=r"at step \d+ of 5: the run diverged; check train.lr=1e\+30"):
        train_causal_lm(validate_config(run_config(tiny, train={"lr": 1e30})), out, progress=False)
    assert not out.exists()
