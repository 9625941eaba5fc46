"""`train_glue`: short real runs of the packaged MiniLM on cut copies of the real GLUE files write one HDF5 result
each; a run killed after an epoch resumes to exactly the unbroken run; the metrics are GLUE's."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from hpcq.results import read_run
from hpcq.train.config import load_config
from hpcq.train.glue import glue_metrics, train_glue
from test_glue_tokens import small_glue


def test_glue_metrics_by_task():
    labels, predictions = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    assert glue_metrics("SST-2", predictions, labels) == {"accuracy": 0.75}
    assert glue_metrics("MRPC", predictions, labels) == pytest.approx({"f1": 0.8, "accuracy": 0.75})
    assert glue_metrics("CoLA", predictions, labels) == pytest.approx({"matthews": 2 / 12 ** 0.5})  # (2·1−0)/√(2·3·1·2)
    scores = glue_metrics("STS-B", np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert scores["spearman"] == pytest.approx(0.8) and scores["pearson"] == pytest.approx(1.025 / (0.251875 * 5) ** 0.5)


def config(tmp_path, method, **train):
    overrides = [f"method={method}", "data.max_length=32", f"data.tokens_dir={tmp_path / 'tokens'}",
                 "adapter.axes=[8,8,6]", "train.batch_size=16", "train.lr=0.002", "energy.method=estimate"]
    overrides += [f"train.{key}={value}" for key, value in train.items()]
    return load_config(None, ["task=glue", *overrides])


@pytest.fixture
def sst2(tmp_path, monkeypatch):
    root = small_glue(tmp_path / "data", "SST-2", {"train": 48, "dev": 24})
    monkeypatch.setenv("HPCQ_DATA", str(root))
    return root


@pytest.mark.parametrize("method,pooling", [("quanta", "cls"), ("lora", "mean")])
def test_short_run_writes_a_result(tmp_path, sst2, method, pooling):
    run_config = config(tmp_path, method, epochs=2)
    run_config["adapter"]["pooling"] = pooling
    out = train_glue(run_config, tmp_path / f"{method}.h5", progress=False)
    run = read_run(out)
    assert run.kind == "train" and run.config["method"] == method
    assert run.final["train_size"] == 48 and run.final["test_size"] == 24 and run.final["epochs_run"] == 2
    assert 0.0 <= run.final["test_accuracy"] <= 1.0 and run.final["test_metric_name"] == "accuracy"
    assert len(run.metrics["step_s"]) == len(run.metrics["step_loss"]) == len(run.metrics["step_peak_bytes"]) == 6
    assert len(run.metrics["test_accuracy"]) == 2 and (run.metrics["step_s"] > 0).all()
    assert run.extra["memory"]["peak_bytes"] >= run.extra["memory"]["baseline_bytes"] > 0
    assert run.energy["joules"] > 0
    if method == "quanta":
        assert run.final["adapter_params"] == 104_448 and run.final["quanta_axes"] == "8-8-6"
    else:
        assert run.final["lora_rank"] == 11 and run.final["quanta_matched_params"] == 104_448
    assert not (tmp_path / f"{method}.h5.ckpt").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_the_unbroken_result(tmp_path, sst2):
    unbroken = read_run(train_glue(config(tmp_path, "quanta", epochs=3), tmp_path / "unbroken.h5", progress=False))

    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config(tmp_path, "quanta", epochs=3)))
    out = tmp_path / "resumed.h5"
    child = subprocess.Popen([sys.executable, "-m", "hpcq", "train", "--config", str(config_file), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "resumed.h5.ckpt"
    while not ckpt.exists() and child.poll() is None:
        time.sleep(0.02)
    child.kill()
    child.wait()
    assert ckpt.exists() and not out.exists(), "the run ended before it could be interrupted"

    resumed = read_run(train_glue(load_config(config_file), out, resume=True, progress=False))
    # The killed epoch ran in another process; float32 GEMMs may sum in another order there (last-bit noise),
    # while a resume that lost or repeated a step would move the losses by ~1e-3.
    np.testing.assert_allclose(resumed.metrics["step_loss"], unbroken.metrics["step_loss"], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(resumed.metrics["test_accuracy"], unbroken.metrics["test_accuracy"])
    assert resumed.final["test_accuracy"] == unbroken.final["test_accuracy"]


def test_mean_pooling_is_the_sentence_transformer_pooling():
    from hpcq.data import load_sst2_sentences
    from hpcq.data.sentence_model import load_sentence_model, resolve_model
    from hpcq.train.glue import load_classifier

    texts = load_sst2_sentences().texts[:5]
    model = load_classifier("packaged", "SST-2", "mean").eval()
    transformer = load_sentence_model(resolve_model("packaged"))
    inputs = transformer.tokenizer(texts, padding=True, return_tensors="pt")
    pooled = []
    model.classifier.register_forward_hook(lambda module, args, output: pooled.append(args[0]))
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (5, 2)
    expected = transformer.encode(texts, convert_to_tensor=True)  # mean pooling, then unit length
    assert (torch.nn.functional.normalize(pooled[0], dim=1) - expected).abs().max() < 1e-5


def test_head_and_method_learning_rates():
    from transformers import BertConfig, BertForSequenceClassification

    from hpcq.adapters.methods import adapt_model
    from hpcq.train.glue import glue_optimizer

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=64, vocab_size=50))
    adapted = adapt_model(model, "quanta", target_modules=["query", "value"], head_modules=["classifier"], n_axes=2)
    config = load_config(None, ["task=glue", "train.lr=0.001", "train.head_lr=0.05", "train.lr_by_method={quanta: 0.002}"])
    rates = {id(p): group["lr"] for group in glue_optimizer(adapted.model, config).param_groups for p in group["params"]}
    head = {id(p) for p in adapted.model.base_model.classifier.parameters()}
    assert len(rates) == sum(p.requires_grad for p in adapted.model.parameters()) and head <= set(rates)
    assert {rate for key, rate in rates.items() if key in head} == {0.05}
    assert {rate for key, rate in rates.items() if key not in head} == {0.002}  # lr_by_method wins over lr
    config["train"]["head_lr"] = None
    assert {group["lr"] for group in glue_optimizer(adapted.model, config).param_groups} == {0.002}
