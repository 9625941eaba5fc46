"""The four ways a body is fine-tuned in the comparisons: QuanTA, LoRA at QuanTA's parameter count, full fine-tuning,
and a frozen body (head only). The head (`head_modules`, e.g. a classifier) is trained in every method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from hpcq.adapters.lora import apply_lora, linear_shapes, lora_parameter_count, matched_lora_rank
from hpcq.adapters.quanta import QuantaConfig, get_quanta_model, parameter_count
from hpcq.adapters.targets import Targets, find_modules
from hpcq.errors import ConfigError

METHODS = ("quanta", "lora", "full", "frozen")


@dataclass
class AdaptedModel:
    """A model prepared for one method, and its parameter counts.

    counts: `adapter` (trainable body parameters: gates, LoRA factors, or the whole body), `head`, `trainable`
    (adapter + head), `total`. details: method facts such as the LoRA rank and the QuanTA count it matches.
    """

    model: nn.Module
    method: str
    counts: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)


def quanta_parameters(model: nn.Module, config: QuantaConfig) -> int:
    """The trainable QuanTA parameters `config` would add to `model` (without changing it)."""
    return sum(parameter_count(config.axes_for(n_in, n_out)) for n_in, n_out in linear_shapes(model, config.target_modules))


def _count(model: nn.Module, head_modules: Sequence[str]) -> dict[str, int]:
    head_prefixes = tuple(f"{name}." for name, _ in find_modules(model, head_modules, "head_modules"))
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    # peft wraps a saved module as `<name>.modules_to_save.default.<param>`: count those as head too.
    head = sum(n for name, n in trainable.items() if name.startswith(head_prefixes) or ".modules_to_save." in name)
    total_trainable = sum(trainable.values())
    return {"adapter": total_trainable - head, "head": head, "trainable": total_trainable,
            "total": sum(p.numel() for p in model.parameters())}


def adapt_model(model: nn.Module, method: str, *, target_modules: Targets, head_modules: Sequence[str],
                axes: Sequence[int] | None = None, n_axes: int = 4, dropout: float = 0.0, path: str = "auto",
                lora_rank: int | None = None, lora_alpha: float | None = None) -> AdaptedModel:
    """Prepare `model` for `method` (one of METHODS), training `head_modules` in every case.

    quanta: gates on `target_modules` with `axes` (or a balanced split into `n_axes`) and forward `path`
    (QuantaConfig); lora: peft LoRA on the same layers, of rank `lora_rank` or, when None, the rank whose count is
    closest to QuanTA's with these settings; full: every parameter; frozen: the head only.
    """
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if not head_modules:
        raise ConfigError("head_modules is empty; name the classifier head (e.g. ['classifier'])")
    find_modules(model, head_modules, "head_modules")
    quanta_config = QuantaConfig(target_modules, axes=tuple(axes) if axes else None, n_axes=n_axes, dropout=dropout,
                                 path=path, modules_to_save=list(head_modules))
    details: dict[str, Any] = {}
    if method == "quanta":
        adapted = get_quanta_model(model, quanta_config)
        details["axes"] = {name: list(layer.axes) for name, layer in adapted.quanta_layers.items()}
        return AdaptedModel(adapted, method, _count(adapted.base_model, head_modules), details)
    if method == "lora":
        matched = quanta_parameters(model, quanta_config)
        shapes = linear_shapes(model, target_modules)
        rank = lora_rank if lora_rank is not None else matched_lora_rank(matched, shapes)
        details.update(lora_rank=rank, quanta_parameters=matched, lora_parameters=lora_parameter_count(rank, shapes))
        adapted = apply_lora(model, target_modules, rank, lora_alpha, dropout, head_modules)
        return AdaptedModel(adapted, method, _count(adapted, head_modules), details)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(method == "full")
    for _, module in find_modules(model, head_modules, "head_modules"):
        module.requires_grad_(True)
    return AdaptedModel(model, method, _count(model, head_modules), details)
