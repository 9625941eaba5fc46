"""Choosing modules by name, as Hugging Face PEFT does: a list of names matches a module whose full name equals
an entry or ends with "." + entry (`query` matches `bert.encoder.layer.0.attention.self.query`); a single string
is a regular expression that must match the full name."""

from __future__ import annotations

import re
from typing import Sequence

from torch import nn

from hpcq.errors import ConfigError

Targets = Sequence[str] | str


def name_matches(name: str, targets: Targets) -> bool:
    """Whether the module called `name` is selected by `targets` (list of names, or one regex)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == target or name.endswith("." + target) for target in targets)


def linear_names(model: nn.Module, limit: int = 8) -> str:
    """A short list of the distinct last name parts of `model`'s linear layers, for error messages."""
    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, nn.Linear)})
    shown = ", ".join(names[:limit]) + (", …" if len(names) > limit else "")
    return shown or "(none: the model has no nn.Linear)"


def require_linear(module: nn.Module, name: str) -> nn.Linear:
    """`module` itself when it is an nn.Linear (the only layer type QuanTA and LoRA adapt), else a ConfigError."""
    if not isinstance(module, nn.Linear):
        raise ConfigError(f"module {name!r} is a {type(module).__name__}, not an nn.Linear; QuanTA and LoRA adapt "
                          f"linear layers only, so leave it out of target_modules")
    return module


def find_modules(model: nn.Module, targets: Targets, option: str = "target_modules") -> list[tuple[str, nn.Module]]:
    """(name, module) for every module `targets` selects; ConfigError naming existing layers when none is."""
    if not targets:
        raise ConfigError(f"{option} is empty; name the layers to adapt, e.g. ['query', 'value'] or ['q_proj', 'v_proj']")
    found = [(name, module) for name, module in model.named_modules() if name and name_matches(name, targets)]
    if not found:
        example = next((name for name, module in model.named_modules() if isinstance(module, nn.Linear)), None)
        raise ConfigError(
            f"{option}={targets!r} matches no module of this {type(model).__name__}; its linear layers are named "
            f"{linear_names(model)}" + (f" (full names such as {example!r})" if example else "")
        )
    return found
