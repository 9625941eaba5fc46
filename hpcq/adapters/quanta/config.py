"""`QuantaConfig`: which layers get a QuanTA adapter, and how their hidden dimension is split into axes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hpcq.adapters.quanta.axes import choose_axes
from hpcq.adapters.targets import Targets
from hpcq.errors import ConfigError

#: how a training forward is computed (`hpcq.adapters.quanta.layer` explains the costs)
PATHS = ("auto", "dense", "chain")


def check_path(path: str) -> None:
    """ConfigError unless `path` is one of PATHS."""
    if path not in PATHS:
        raise ConfigError(f"path={path!r} is not one of {', '.join(PATHS)} (auto chooses per batch)")


@dataclass
class QuantaConfig:
    """Settings of a QuanTA adapter, in the manner of a PEFT config.

    target_modules: layer names (suffix match, e.g. ["query", "value"] or ["q_proj", "v_proj"]) or one regex.
    axes: the factorisation d_1 … d_N of every targeted layer's dimension max(in, out); None chooses, per layer,
        the most balanced split into `n_axes` factors (e.g. 384 → 6-4-4-4, 4096 → 8-8-8-8).
    dropout: dropout on the input of T(θ) only, as published: (W0 − T(θ0))·x + b + T(θ)·dropout(x).
    path: how a training forward is computed: "chain" (the gates on the activations), "dense" (T(θ) folded into
        the base GEMM) or "auto" (per batch, the cheaper one; `hpcq.adapters.quanta.layer` explains the costs).
    modules_to_save: further modules trained and saved with the adapter in full (e.g. a classifier head).
    """

    target_modules: Targets
    axes: tuple[int, ...] | None = None
    n_axes: int = 4
    dropout: float = 0.0
    path: str = "auto"
    modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.target_modules, str):
            self.target_modules = list(self.target_modules)
        self.modules_to_save = list(self.modules_to_save)
        if self.axes is not None:
            self.axes = tuple(int(a) for a in self.axes)
            if len(self.axes) < 2 or min(self.axes) < 2:
                raise ConfigError(f"axes={self.axes} needs at least 2 axes, each of size >= 2 (e.g. (8, 8, 6))")
        if self.n_axes < 2:
            raise ConfigError(f"n_axes={self.n_axes} is too small: QuanTA needs at least 2 axes (3 or 4 are usual)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        check_path(self.path)

    def axes_for(self, in_features: int, out_features: int) -> tuple[int, ...]:
        """The axes for a layer of this shape: the configured ones, or a balanced split of max(in, out)."""
        return self.axes if self.axes is not None else choose_axes(max(in_features, out_features), self.n_axes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data["axes"] = list(self.axes) if self.axes is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantaConfig:
        """The config saved by `to_dict`; unknown keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"QuanTA config has unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)
