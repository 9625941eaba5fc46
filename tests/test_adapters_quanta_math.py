"""QuanTA on single layers: the official gate order and einsum strings, the fast contraction against them,
the parameter count, the rank of the update (against LoRA), gradients against finite differences, merge."""

import copy
import itertools
import math

import opt_einsum
import pytest
import torch
from torch import nn

from hpcq.adapters.quanta import QuantaLinear, choose_axes, gate_pairs, parameter_count
from hpcq.adapters.quanta.contraction import apply_gates, contraction_plan
from hpcq.adapters.quanta.einsum import dense_operator, merge_expression_string, train_expression_string
from hpcq.errors import ConfigError


def random_gates(axes, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(axes[a], axes[b], axes[a], axes[b], dtype=dtype, generator=generator) / (axes[a] * axes[b]) ** 0.5
            for a, b in gate_pairs(len(axes))]


def perturb(layer: QuantaLinear, scale: float, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in layer.quanta_gates.values():
            gate.add_(scale * torch.randn(gate.shape, generator=generator, dtype=gate.dtype))


def test_gate_order_is_the_official_one():
    # positive-index form of combinations(range(-1, -5, -1), 2): (3,2), (3,1), (3,0), (2,1), (2,0), (1,0)
    assert gate_pairs(4) == ((2, 3), (1, 3), (0, 3), (1, 2), (0, 2), (0, 1))
    assert len(gate_pairs(5)) == 10


def test_einsum_strings_are_the_official_ones():
    assert train_expression_string(3) == "...abc,efbc,diaf,ghde->...ghi"
    assert train_expression_string(4) == "...abcd,ghcd,flbh,epal,jkfg,ioek,mnij->...mnop"
    assert train_expression_string(5) == "...abcde,ijde,hocj,gtbo,fyat,mnhi,lsgn,kxfs,qrlm,pwkr,uvpq->...uvwxy"
    assert merge_expression_string(3) == "efbc,diaf,ghde->ghiabc"
    assert merge_expression_string(4) == "ghcd,flbh,epal,jkfg,ioek,mnij->mnopabcd"


@pytest.mark.parametrize("axes", [(4, 2, 3), (2, 3, 2, 2), (3, 2, 2, 2, 2), (2,) * 7, (5, 3)])
def test_fast_contraction_equals_official_train_einsum_and_merge_einsum(axes):
    gates = random_gates(axes)
    x = torch.randn(7, math.prod(axes), dtype=torch.float64)
    official = opt_einsum.contract(train_expression_string(len(axes)), x.reshape(-1, *axes), *gates,
                                   backend="torch").reshape(x.shape)
    fast = apply_gates(x, gates, contraction_plan(axes))
    merged = x @ dense_operator(gates, axes).T
    torch.testing.assert_close(fast, official, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, merged, rtol=1e-12, atol=1e-12)


def test_plan_needs_fewer_activation_copies_than_gates():
    # moving each pair to the innermost position would copy once per gate plus once at the end
    assert contraction_plan((8, 8, 6)).copies == 2
    assert contraction_plan((4, 4, 4, 6)).copies == 3
    assert contraction_plan((2, 2, 2, 2, 2)).copies == 5


def test_parameter_count_is_sum_over_pairs():
    for axes in [(4, 4, 4), (16, 8, 8, 4), (8, 8, 6), (4, 4, 4, 4, 4, 4)]:
        expected = sum((axes[m] * axes[n]) ** 2 for m, n in itertools.combinations(range(len(axes)), 2))
        layer = QuantaLinear(nn.Linear(math.prod(axes), math.prod(axes)), axes)
        trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad) - layer.base_layer.weight.numel() \
            - layer.base_layer.bias.numel()
        assert parameter_count(axes) == layer.n_parameters == trainable == expected
    assert parameter_count((16, 8, 8, 4)) == 43_008  # the official LLaMA configuration


def test_update_is_full_rank_where_lora_with_more_parameters_is_not():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    axes = (4, 4, 4)
    layer = QuantaLinear(nn.Linear(64, 64).double(), axes)
    layer.double()
    perturb(layer, 0.1)
    quanta_rank = torch.linalg.matrix_rank(layer.delta_weight().double()).item()

    rank = math.ceil(parameter_count(axes) / (64 + 64))  # smallest LoRA rank with at least as many parameters
    holder = nn.Sequential()
    holder.add_module("proj", nn.Linear(64, 64).double())
    original = holder.proj.weight.detach().clone()
    lora = get_peft_model(holder, LoraConfig(r=rank, target_modules=["proj"], init_lora_weights=False))
    lora_parameters = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    merged = lora.merge_and_unload().proj.weight.detach()
    lora_rank = torch.linalg.matrix_rank(merged - original).item()

    assert lora_parameters >= parameter_count(axes) == 768
    assert quanta_rank == 64
    assert lora_rank <= rank


def follows_official_init(gate: torch.Tensor) -> bool:
    """Whether a gate's entries look drawn from U(−b, b), b = √(3/fan_in), fan_in = d_low·d_high (the official
    kaiming_uniform_ with nonlinearity='linear'): scaled by b, the largest |w| is just under 1 and the std 1/√3."""
    scaled = gate.flatten() / math.sqrt(3 / (gate.shape[2] * gate.shape[3]))
    return (0.995 < float(scaled.abs().max()) <= 1.0 and abs(float(scaled.std()) * math.sqrt(3) - 1) < 0.01
            and abs(float(scaled.mean())) < 0.01)


def test_gates_start_with_the_official_initialisation():
    torch.manual_seed(0)
    layer = QuantaLinear(nn.Linear(4096, 4096, bias=False), (16, 16, 16))  # three gates of 256² = 65,536 entries
    for key, gate in layer.quanta_gates.items():
        assert follows_official_init(gate.detach()), key
        assert torch.equal(getattr(layer, f"quanta_frozen_{key}"), gate.detach())  # θ0 = θ at the start
    # the check can fail: nn.Linear's default (the previous init here) is √3 narrower
    old = torch.empty(16, 16, 16, 16)
    nn.init.kaiming_uniform_(old.view(256, 256), a=math.sqrt(5))
    assert not follows_official_init(old)


@pytest.mark.parametrize("path", ["chain", "dense"])
@pytest.mark.parametrize("in_features,out_features,axes", [(12, 12, (2, 3, 2)), (12, 8, (3, 2, 2)), (8, 12, (2, 2, 3))])
def test_gradients_match_finite_differences(in_features, out_features, axes, path):
    torch.manual_seed(0)
    layer = QuantaLinear(nn.Linear(in_features, out_features).double(), axes, path=path).double()
    perturb(layer, 0.3)
    x = torch.randn(3, in_features, dtype=torch.float64, requires_grad=True)
    names = [f"quanta_gates.{key}" for key in layer.quanta_gates]

    def forward(x, *gate_values):
        return torch.func.functional_call(layer, dict(zip(names, gate_values)), (x,))

    inputs = (x, *[g.detach().clone().requires_grad_() for g in layer.quanta_gates.values()])
    assert torch.autograd.gradcheck(forward, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("in_features,out_features,axes", [(64, 64, (4, 4, 4)), (48, 32, (4, 4, 3)), (32, 48, (4, 3, 4))])
def test_init_equals_base_and_merge_round_trips(in_features, out_features, axes):
    torch.manual_seed(0)
    base = nn.Linear(in_features, out_features)
    original = base.weight.detach().clone()
    layer = QuantaLinear(base, axes, dropout=0.1)
    x = torch.randn(5, 9, in_features)
    expected = torch.nn.functional.linear(x, original, base.bias)
    layer.eval()  # without dropout (evaluation) the update is zero at init; in training see the dropout test
    assert (layer(x) - expected).abs().max() < 1e-6

    perturb(layer, 0.05)
    layer.eval()
    unmerged = layer(x)
    assert (unmerged - expected).abs().max() > 1e-3  # the perturbation does change the layer
    layer.merge()
    assert (layer(x) - unmerged).abs().max() < 1e-5
    layer.unmerge()
    assert (layer.base_layer.weight - original).abs().max() < 1e-6


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_chain_dense_and_evaluation_paths_agree(dropout):
    torch.manual_seed(0)
    chain = QuantaLinear(nn.Linear(48, 32), (4, 4, 3), dropout=dropout, path="chain")
    perturb(chain, 0.05)
    layers = {"chain": chain, "dense": copy.deepcopy(chain)}
    layers["dense"].path = "dense"
    x = torch.randn(2, 5, 48)
    outputs, grads = {}, {}
    for path, layer in layers.items():
        torch.manual_seed(1)  # the same dropout mask on both paths
        outputs[path] = layer(x)
        outputs[path].square().sum().backward()
        grads[path] = [gate.grad for gate in layer.quanta_gates.values()]
    torch.testing.assert_close(outputs["dense"], outputs["chain"], rtol=1e-5, atol=1e-6)
    for dense, chain in zip(grads["dense"], grads["chain"]):
        # float32 rounding, relative to the gradient's scale (official init: entries up to ~0.1)
        torch.testing.assert_close(dense, chain, rtol=1e-4, atol=1e-4 * float(chain.abs().max()))

    layer = layers["chain"].eval()
    expected = layer(x).detach()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)  # the cached W0 − T(θ0) + T(θ)
        perturb(layer, 0.05, seed=2)  # an optimizer step changes θ in place: the cache must follow
        changed = layer(x)
    torch.testing.assert_close(changed, layer(x.requires_grad_()).detach(), rtol=1e-5, atol=1e-6)
    assert (changed - expected).abs().max() > 1e-3


def official_update(x: torch.Tensor, gates: list[torch.Tensor], axes: tuple[int, ...],
                    out_features: int) -> torch.Tensor:
    """T·x as the official forward computes it: x zero-padded to D, its training einsum, output cropped."""
    padded = nn.functional.pad(x, (0, math.prod(axes) - x.shape[-1])).reshape(-1, *axes)
    y = opt_einsum.contract(train_expression_string(len(axes)), padded, *gates, backend="torch")
    return y.reshape(*x.shape[:-1], -1)[..., :out_features]


@pytest.mark.parametrize("path", ["chain", "dense"])
@pytest.mark.parametrize("scale", [0.0, 0.05])  # at init and after a step
def test_dropout_follows_the_published_formula(path, scale):
    torch.manual_seed(0)
    axes = (4, 4, 3)
    layer = QuantaLinear(nn.Linear(48, 32).double(), axes, dropout=0.3, path=path).double().train()
    perturb(layer, scale)
    dropped = []  # the dropout output the layer used, so the check does not depend on the RNG
    layer.quanta_dropout.register_forward_hook(lambda module, inputs, output: dropped.append(output))
    x = torch.randn(2, 5, 48, dtype=torch.float64)
    y = layer(x)
    (mask_input,) = dropped
    assert (mask_input == 0).any() and not torch.equal(mask_input, x)  # dropout did act
    base, gates, frozen = layer.base_layer, list(layer.quanta_gates.values()), layer.frozen_gates
    # published: (W0 − T(θ0))·x + b + T(θ)·dropout(x)
    published = (nn.functional.linear(x, base.weight, base.bias) - official_update(x, frozen, axes, 32)
                 + official_update(mask_input, gates, axes, 32))
    torch.testing.assert_close(y, published, rtol=1e-10, atol=1e-10)
    # the form hpcq had before, W0·x + b + (T(θ) − T(θ0))·dropout(x), is another function
    previous = (nn.functional.linear(x, base.weight, base.bias) + official_update(mask_input, gates, axes, 32)
                - official_update(mask_input, frozen, axes, 32))
    assert (y - previous).abs().max() > 1e-2


def test_evaluation_cache_follows_any_change_of_the_gates():
    torch.manual_seed(0)
    layer = QuantaLinear(nn.Linear(48, 32), (4, 4, 3)).eval()
    perturb(layer, 0.05)
    x = torch.randn(6, 48)

    def uncached() -> torch.Tensor:  # with gradients on, the layer takes its training path: no cache
        return layer(x).detach()

    with torch.no_grad():
        layer(x)  # fills the cache
        gate = next(iter(layer.quanta_gates.values()))
        version = gate._version
        gate.data.add_(0.5)  # a write autograd's version counter does not see
        assert gate._version == version
        after_gate = layer(x)
    torch.testing.assert_close(after_gate, uncached(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        layer.frozen_gates[0].data.mul_(0.5)  # θ0 as well
        after_frozen = layer(x)
    torch.testing.assert_close(after_frozen, uncached(), rtol=1e-5, atol=1e-5)
    assert (after_frozen - after_gate).abs().max() > 1e-2


def test_auto_path_is_dense_for_many_tokens_and_chain_for_few():
    layer = QuantaLinear(nn.Linear(384, 384), (6, 4, 4, 4))
    assert layer.chooses_dense(32 * 48) and not layer.chooses_dense(8)
    assert QuantaLinear(nn.Linear(384, 384), (6, 4, 4, 4), path="chain").chooses_dense(10**6) is False
    with pytest.raises(ConfigError, match="path='fast' is not one of auto, dense, chain"):
        QuantaLinear(nn.Linear(384, 384), (6, 4, 4, 4), path="fast")


def test_balanced_axes():
    assert choose_axes(4096, 4) == (8, 8, 8, 8)
    assert choose_axes(384, 3) == (8, 8, 6)
    assert choose_axes(384, 4) == (6, 4, 4, 4)
    assert math.prod(choose_axes(3072, 4)) == 3072
    with pytest.raises(ConfigError, match="4099 cannot be split into 3 axes"):
        choose_axes(4099, 3)


def test_axes_whose_product_is_not_the_dimension_are_refused():
    with pytest.raises(ConfigError, match=r"axes \(4, 4, 4\) multiply to 64, but module 'proj' is 96→96.*product is 96"):
        QuantaLinear(nn.Linear(96, 96), (4, 4, 4), name="proj")
