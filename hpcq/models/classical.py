"""Classical heads in PyTorch: MLPs of given hidden sizes, and MLPs matched to a parameter budget.

Parameter matching solves for the hidden width h of a one-hidden-layer network in → h → out, whose
parameter count is (in + 1)·h + (h + 1)·out. A 384-dimensional embedding makes even h = 1 cost 389
parameters, more than a small quantum head has; the matched MLP then first projects the embedding onto its
leading principal components (fitted on the training set, not trained, like any preprocessing) and solves for
h on that smaller input. `matched_mlp_shape` picks the input width nearest the preferred one (the quantum
head's qubit count: it, too, squeezes the embedding through that many numbers) at which h lands within the
tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from hpcq.errors import ConfigError

MATCH_TOLERANCE = 0.05


def mlp_parameter_count(in_features: int, hidden: Sequence[int], out_features: int) -> int:
    """Weights and biases of in → hidden[0] → … → out."""
    widths = [in_features, *hidden, out_features]
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def matched_hidden_width(target: int, in_features: int, out_features: int) -> int:
    """The hidden width h ≥ 1 whose in → h → out network has the parameter count nearest `target`."""
    if target < 1:
        raise ConfigError(f"a parameter budget of {target} cannot be matched; it must be at least 1")
    return max(1, round((target - out_features) / (in_features + 1 + out_features)))


@dataclass(frozen=True)
class MatchedShape:
    """Input width (None: the full embedding, else principal components), hidden width, parameter count."""

    components: int | None
    hidden: int
    parameters: int

    def relative_error(self, target: int) -> float:
        return abs(self.parameters - target) / target


def matched_mlp_shape(
    target: int, in_features: int, out_features: int, preferred_components: int, tolerance: float = MATCH_TOLERANCE
) -> MatchedShape:
    """The one-hidden-layer MLP nearest `target` parameters: on the full input if that lands within
    `tolerance`, else on the number of principal components nearest `preferred_components` that does."""
    hidden = matched_hidden_width(target, in_features, out_features)
    full = MatchedShape(None, hidden, mlp_parameter_count(in_features, [hidden], out_features))
    if full.relative_error(target) <= tolerance:
        return full
    preferred = min(max(preferred_components, 1), in_features)
    for components in sorted(range(1, in_features + 1), key=lambda p: (abs(p - preferred), p)):
        hidden = matched_hidden_width(target, components, out_features)
        shape = MatchedShape(components, hidden, mlp_parameter_count(components, [hidden], out_features))
        if shape.relative_error(target) <= tolerance:
            return shape
    raise ConfigError(
        f"no MLP with {out_features} outputs has {target} parameters within {tolerance:.0%}; the budget is too "
        f"small (the smallest MLP has {mlp_parameter_count(1, [1], out_features)})"
    )


def _layers(widths: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        modules.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            modules.append(activation())
    return nn.Sequential(*modules)


def input_dropout_layer(p: float) -> nn.Dropout:
    """Dropout on a head's input features while it trains (none in evaluation): a regulariser for heads
    that see a few hundred embeddings. It holds no tensors, so a head's weights are the same without it."""
    if not 0 <= p < 1:
        raise ConfigError(f"input_dropout={p!r} must be in [0, 1): the chance of zeroing an input feature")
    return nn.Dropout(p)


class MLPHead(nn.Module):
    """in → hidden… → classes with ReLU; optionally on the leading `components` principal components of the
    input (call `prepare(train_features)` to fit them; they are buffers, not trained)."""

    def __init__(
        self, in_features: int, hidden: Sequence[int], n_classes: int = 2, *, components: int | None = None,
        input_dropout: float = 0.0, dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ConfigError(f"hidden={list(hidden)!r} must be a list of positive layer widths ([] = linear)")
        if components is not None and not 1 <= components <= in_features:
            raise ConfigError(f"components={components!r} must be between 1 and the input width {in_features}")
        self.components = components
        self.dtype = dtype
        self.input_dropout = input_dropout_layer(input_dropout)
        if components is not None:
            self.register_buffer("center", torch.zeros(in_features, dtype=dtype))
            self.register_buffer("basis", torch.zeros(in_features, components, dtype=dtype))
        self.net = _layers([components or in_features, *hidden, n_classes], nn.ReLU).to(dtype)

    def prepare(self, train_features: torch.Tensor) -> None:
        """Fit the principal-component projection on the training features (no-op without `components`)."""
        if self.components is None:
            return
        x = train_features.to(self.dtype)
        center = x.mean(dim=0)
        _, _, vh = torch.linalg.svd(x - center, full_matrices=False)
        basis = vh[: self.components].T
        # SVD signs are arbitrary; fix them so that the same data always gives the same projection.
        basis = basis * torch.sign(basis[basis.abs().argmax(dim=0), torch.arange(basis.shape[1])])
        self.center.copy_(center)
        self.basis.copy_(basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.components is not None:
            return self.net(self.input_dropout(x - self.center) @ self.basis)
        return self.net(self.input_dropout(x))


class TanhBlock(nn.Module):
    """in → h → out with tanh after both layers: a classical stand-in for a quantum module whose outputs are
    expectation values in [-1, 1]."""

    def __init__(self, in_features: int, hidden: int, out_features: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.net = nn.Sequential(_layers([in_features, hidden, out_features], nn.Tanh), nn.Tanh()).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def trainable_parameter_count(module: nn.Module) -> int:
    """Parameters that the optimizer updates."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
