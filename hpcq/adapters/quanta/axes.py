"""The factorisation of a hidden dimension into axes d_1 … d_N, and the pairs of axes that carry gates.

QuanTA reshapes a D-vector into an N-index tensor (row-major: axis 0 has the largest stride) and applies one
trainable gate per unordered pair of axes, in the order of the official code (the last two axes first).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

from hpcq.errors import ConfigError


def gate_pairs(n_axes: int) -> tuple[tuple[int, int], ...]:
    """The axis pairs (low, high) in the official application order.

    The official code walks `itertools.combinations(range(-1, -N-1, -1), 2)`; for N = 4 that is
    (2,3), (1,3), (0,3), (1,2), (0,2), (0,1): the gate on the last two axes is applied first.
    """
    return tuple((n_axes + second, n_axes + first) for first, second in
                 itertools.combinations(range(-1, -n_axes - 1, -1), 2))


def parameter_count(axes: tuple[int, ...]) -> int:
    """Trainable parameters of one adapted matrix: Σ_{m<n} (d_m d_n)²."""
    return sum((axes[m] * axes[n]) ** 2 for m, n in gate_pairs(len(axes)))


def _factorisations(dim: int, parts: int, largest: int) -> list[tuple[int, ...]]:
    """All non-increasing tuples of `parts` factors >= 2, each <= `largest`, whose product is `dim`."""
    if parts == 1:
        return [(dim,)] if 2 <= dim <= largest else []
    found = []
    for factor in range(min(largest, dim // 2), 1, -1):
        if dim % factor == 0:
            found += [(factor, *rest) for rest in _factorisations(dim // factor, parts - 1, factor)]
    return found


@lru_cache(maxsize=None)
def choose_axes(dim: int, n_axes: int) -> tuple[int, ...]:
    """The most balanced split of `dim` into `n_axes` factors >= 2, largest first (e.g. 4096, 4 → 8-8-8-8).

    Balanced means the smallest ratio of largest to smallest factor, which keeps every gate about the same
    size; ties go to the split that the official configurations favour (larger leading axes, e.g. 8-8-6).
    """
    if n_axes < 2:
        raise ConfigError(f"n_axes={n_axes} is too small: QuanTA needs at least 2 axes (3 or 4 are usual)")
    candidates = _factorisations(dim, n_axes, dim)
    if not candidates:
        most = _prime_factor_count(dim)
        raise ConfigError(
            f"dimension {dim} cannot be split into {n_axes} axes of size >= 2 (it has {most} prime factors); "
            f"use n_axes <= {most}, or leave this module out of target_modules"
        )
    return min(candidates, key=lambda axes: (axes[0] / axes[-1], tuple(-a for a in axes)))


def _prime_factor_count(dim: int) -> int:
    count, factor = 0, 2
    while factor * factor <= dim:
        while dim % factor == 0:
            dim //= factor
            count += 1
        factor += 1
    return count + (dim > 1)


def check_axes(axes: tuple[int, ...], in_features: int, out_features: int, module_name: str) -> None:
    """Raise ConfigError unless the axes multiply to the layer's dimension max(in_features, out_features)."""
    dim = max(in_features, out_features)
    if math.prod(axes) != dim:
        raise ConfigError(
            f"axes {tuple(axes)} multiply to {math.prod(axes)}, but module {module_name!r} is "
            f"{in_features}→{out_features} (dimension {dim}); pass axes whose product is {dim} "
            f"(e.g. {choose_axes(dim, len(axes)) if _prime_factor_count(dim) >= len(axes) else (dim,)}), "
            f"or axes=None to choose them per module"
        )
