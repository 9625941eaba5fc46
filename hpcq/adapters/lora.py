"""LoRA through peft, with the rank chosen so its trainable parameter count matches a QuanTA adapter's."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from hpcq.adapters.targets import Targets, find_modules, require_linear
from hpcq.errors import ConfigError


def lora_parameter_count(rank: int, shapes: Sequence[tuple[int, int]]) -> int:
    """Parameters of rank-`rank` LoRA on layers of (in_features, out_features) `shapes`: Σ r (in + out)."""
    return rank * sum(n_in + n_out for n_in, n_out in shapes)


def matched_lora_rank(target_parameters: int, shapes: Sequence[tuple[int, int]]) -> int:
    """The rank r >= 1 whose LoRA parameter count on `shapes` is closest to `target_parameters`."""
    per_rank = lora_parameter_count(1, shapes)
    if per_rank == 0:
        raise ConfigError("no layers to put LoRA on; check target_modules")
    low = max(1, target_parameters // per_rank)
    return min((low, low + 1), key=lambda r: (abs(lora_parameter_count(r, shapes) - target_parameters), r))


def linear_shapes(model: nn.Module, target_modules: Targets) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer `target_modules` selects."""
    shapes = []
    for name, module in find_modules(model, target_modules):
        linear = require_linear(module, name)
        shapes.append((linear.in_features, linear.out_features))
    return shapes


def apply_lora(model: nn.Module, target_modules: Targets, rank: int, alpha: float | None = None,
               dropout: float = 0.0, modules_to_save: Sequence[str] = ()) -> nn.Module:
    """`peft.get_peft_model` with a LoRA of `rank` (scale alpha/r, alpha = 2r unless given) on `target_modules`."""
    from peft import LoraConfig, get_peft_model  # heavy (imports transformers): only when LoRA is asked for

    if rank < 1:
        raise ConfigError(f"LoRA rank {rank} must be at least 1")
    linear_shapes(model, target_modules)  # the same clear errors as QuanTA for targets that match nothing
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        modules_to_save=list(modules_to_save) or None,
    )
    return get_peft_model(model, config)
