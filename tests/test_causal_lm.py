"""Causal-LM fine-tuning on one rank with a tiny LLaMA built from a LlamaConfig (random weights, a tokenizer
trained in the test): QuanTA steps on GSM8K lower the loss, generation-based evaluation runs end to end and its
records agree with the metric functions, bf16 with gradient checkpointing follows fp32, LoRA and full
fine-tuning run, the official 16-8-8-4 preset on a 4096-wide model, and clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from causal_lm_support import write_tiny_llama
from safetensors.torch import load_file

from hpcq.adapters.quanta import parameter_count
from hpcq.errors import ConfigError
from hpcq.eval import extract_answer, is_correct
from hpcq.results import read_run
from hpcq.train.causal_lm import adapt, train_causal_lm, weights_path
from hpcq.train.config import validate_config
from hpcq.train.run import train_from_config

TASKS = ["gsm8k", "AQuA", "boolq"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def run_config(folder: Path, **sections) -> dict:
    """Eight GSM8K rows and a batch of eight: every step sees the same rows, so the loss must fall."""
    config = {"task": "causal_lm", "model": {"name": str(folder), "precision": "fp32"},
              "data": {"train_subset": 8, "max_length": 256}, "adapter": {"axes": [4, 4, 4]},
              "train": {"lr": 0.02, "max_steps": 5, "batch_size": 8, "micro_batch_size": 4, "threads": 1,
                        "device": "cpu"},
              "eval": {"tasks": TASKS, "subset": 2, "max_new_tokens": 8, "batch_size": 2},
              "energy": {"method": "estimate"}}
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config


@pytest.fixture(scope="module")
def quanta_run(tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("quanta-run")
    config_file = folder / "run.yaml"
    config_file.write_text(yaml.safe_dump(run_config(tiny)))
    path = train_from_config(config_file, [], folder / "run.h5")  # through `hpcq train`'s trainer table
    return read_run(path), path


def test_quanta_steps_on_gsm8k_lower_the_loss(quanta_run) -> None:
    record, path = quanta_run
    losses = record.metrics["step_loss"]
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.05, losses
    final = record.final
    assert final["quanta_axes"] == "4-4-4" and final["adapted_layers"] == 4  # q_proj and v_proj of 2 layers
    assert final["n_trainable_params"] == final["adapter_params"] == 4 * parameter_count((4, 4, 4))
    assert final["world_size"] == 1 and final["strategy"] == "none" and final["train_size"] == 8
    weights = load_file(weights_path(path))
    gates = [k for k in weights if ".quanta_gates." in k]
    assert len(gates) == 12 and len(weights) == 24  # θ (3 gates per layer) and its frozen copy θ0
    moved = max(float((weights[k] - weights[k.replace("quanta_gates.", "quanta_frozen_")]).abs().max())
                for k in gates)
    assert moved > 1e-3
    assert not Path(str(path) + ".ckpt").exists()  # removed once the result is written


def test_generation_eval_runs_and_agrees_with_the_metrics(quanta_run) -> None:
    record, _ = quanta_run
    assert set(record.extra["eval"]) == set(TASKS)
    for task in TASKS:
        group = record.extra["eval"][task]
        assert group["n"] == 2 and len(group["generated"]) == 2 and group["new_tokens"] <= 2 * 8
        for generated, predicted, gold, correct in zip(group["generated"], group["predicted"], group["gold"],
                                                       group["correct"]):
            again = extract_answer(group["kind"], generated)
            assert (again or "") == predicted and is_correct(group["kind"], again, gold) == bool(correct)
        assert record.final[f"eval_{task}_accuracy"] == pytest.approx(float(group["correct"].mean()))
    assert record.final["eval_merged"] is True  # QuanTA merged into the weights for generation
    assert record.timing["eval_s"] > 0 and record.extra["memory"]["peak_bytes"] > 0


def test_bf16_with_gradient_checkpointing_follows_fp32(tiny: Path, tmp_path: Path, quanta_run) -> None:
    config = validate_config(run_config(tiny, model={"precision": "bf16", "gradient_checkpointing": True},
                                        eval={"tasks": ["gsm8k"]}))
    record = read_run(train_causal_lm(config, tmp_path / "bf16.h5", progress=False))
    fp32 = quanta_run[0].metrics["step_loss"]
    assert record.final["gradient_checkpointing"] is True
    assert quanta_run[0].final["gradient_checkpointing"] is False
    assert record.metrics["step_loss"] == pytest.approx(fp32, rel=5e-3)
    assert all(v.dtype == torch.float32 for v in load_file(weights_path(tmp_path / "bf16.h5")).values())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_lora_and_full_fine_tuning(tiny: Path, tmp_path: Path, method: str) -> None:
    lr = 0.02 if method == "lora" else 0.002  # every weight at once needs a smaller step
    config = validate_config(run_config(tiny, method=method, train={"max_steps": 3, "lr": lr},
                                        eval={"tasks": ["gsm8k"]}))
    record = read_run(train_causal_lm(config, tmp_path / f"{method}.h5", progress=False))
    losses, final = record.metrics["step_loss"], record.final
    assert losses[-1] < losses[0]
    if method == "lora":  # the rank whose count is closest to QuanTA's on the same layers
        assert final["quanta_matched_params"] == 4 * parameter_count((4, 4, 4))
        assert final["lora_rank"] == 7 and final["n_trainable_params"] == 7 * (2 * (64 + 64) + 2 * (64 + 32))
        assert weights_path(tmp_path / "lora.h5").is_file()
    else:
        assert final["n_trainable_params"] == final["total_params"]
        assert not weights_path(tmp_path / "full.h5").exists()  # the whole model: only when asked for


def test_official_preset_on_a_4096_wide_llama() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=2,
                 num_attention_heads=32)
    config = validate_config({"task": "causal_lm", "model": {"name": "meta"}})
    for kv_heads in (32, 8):  # LLaMA-2-7B, and LLaMA-3-style GQA (v_proj 4096→1024)
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=kv_heads))
        adapted, facts = adapt(model, config)
        assert facts["quanta_axes"] == "16-8-8-4" and facts["quanta_axes_source"] == "official"
        # 43,008 per adapted matrix (shared/reference/quanta.md §1.5), on q_proj and v_proj of each layer
        assert facts["adapter_params"] == facts["n_trainable_params"] == 43_008 * 2 * 2


def test_clear_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only 8 training rows for train.batch_size=16"):
        train_causal_lm(validate_config(run_config(tiny, train={"batch_size": 16})), tmp_path / "x.h5")
    missing = run_config(tiny, model={"name": "no-such-org/no-such-model"})
    with pytest.raises(ConfigError, match=r"stage the weights on the login node .*/no-such-org--no-such-model"):
        train_causal_lm(validate_config(missing), tmp_path / "y.h5")
    with pytest.raises(ConfigError, match="adapter.axes"):
        validate_config(run_config(tiny, adapter={"axes": "16-8-8-4"}))


@pytest.mark.slow
def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint(tiny: Path, tmp_path: Path) -> None:
    """Slurm sends SIGTERM before it kills a job at its time limit: `hpcq train` checkpoints and says how to go on."""
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(run_config(tiny, train={"max_steps": 200, "checkpoint_every": 1})))
    out, ckpt = tmp_path / "run.h5", tmp_path / "run.h5.ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "hpcq", "train", "--config", str(config_file), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2, stderr[-2000:]
    assert "stopped by a signal after step" in stderr and "--resume" in stderr
    saved = torch.load(ckpt, weights_only=False)
    assert 1 <= saved["state"]["step"] < 200 and not out.exists()
