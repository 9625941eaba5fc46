"""The fast training path: the gates applied one after another, with a layout plan computed once per axes.

The optimal contraction order for the training einsum is sequential (x·G1, then ·G2, …; reference §1.8), so
the cost is N(N-1)/2 small GEMMs plus the axis permutations between them, and on a CPU the permutations (full
copies of the activation) cost as much as the GEMMs. A gate needs its two axes adjacent in memory, and a GEMM
is only efficient when the token (batch) dimension lies in the long side of the matrix product: either the pair
is the innermost dimension (`X[…, pair] @ Gᵀ`) or the tokens come after the pair (`G @ X[pre, pair, post]`).
`contraction_plan` picks, by dynamic programming over memory layouts, the sequence of layouts that satisfies
this for every gate with the fewest copies (3 instead of 6 for N = 4, 5 instead of 10 for N = 5), and
`apply_gates` executes it. Gates are always passed in the official order (`axes.gate_pairs`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from hpcq.adapters.quanta.axes import gate_pairs

TOKENS = -1
"""Marks the token (flattened batch) dimension in a memory layout; axes are 0 … N-1."""

_EXHAUSTIVE_UP_TO = 6  # (N+1)! layouts: 5040 for N = 6; beyond that only "pair innermost" layouts are searched


@dataclass(frozen=True)
class GateStep:
    """Where one gate is applied: the memory layout of the activation and the position of its pair in it."""

    layout: tuple[int, ...]
    position: int
    swapped: bool  # the pair lies in memory as (high, low): the gate's axes are transposed to match


@dataclass(frozen=True)
class ContractionPlan:
    """Layouts for every gate of one axes factorisation, and how many full copies of the activation they need."""

    axes: tuple[int, ...]
    steps: tuple[GateStep, ...]
    copies: int


def _canonical(n_axes: int) -> tuple[int, ...]:
    return (TOKENS, *range(n_axes))


def _pair_position(layout: tuple[int, ...], pair: tuple[int, int]) -> int | None:
    """Index of the pair's first element if the pair is adjacent and efficiently contractible there, else None."""
    first, second = sorted((layout.index(pair[0]), layout.index(pair[1])))
    if second != first + 1:
        return None
    innermost = second == len(layout) - 1
    tokens_after = layout.index(TOKENS) > second
    return first if innermost or tokens_after else None


def _candidate_layouts(n_axes: int, pairs: tuple[tuple[int, int], ...]) -> list[tuple[int, ...]]:
    if n_axes <= _EXHAUSTIVE_UP_TO:
        return list(itertools.permutations(_canonical(n_axes)))
    innermost = {(TOKENS, *sorted(set(range(n_axes)) - set(pair)), *pair) for pair in pairs}
    return sorted(innermost | {_canonical(n_axes)})


@lru_cache(maxsize=None)
def contraction_plan(axes: tuple[int, ...]) -> ContractionPlan:
    """The layout sequence with the fewest activation copies (ties: more plain GEMMs, fewer batched ones).

    Changing layout costs one copy wherever it happens, so the dynamic programme only needs, per gate, the best
    cost of arriving in each layout: stay (free) or switch from the best previous layout (one copy).
    """
    n_axes = len(axes)
    pairs = gate_pairs(n_axes)
    layouts = _candidate_layouts(n_axes, pairs)
    start = _canonical(n_axes)
    # cost = (copies, batched GEMMs); the start layout is free, any other costs its initial copy.
    cost = {layout: (0 if layout == start else 1, 0) for layout in layouts}
    history = []
    for pair in pairs:
        best_previous = min(cost, key=cost.get)
        arrived, came_from = {}, {}
        for layout in layouts:
            position = _pair_position(layout, pair)
            if position is None:
                continue
            batched = int(position + 2 != len(layout))
            stay = cost.get(layout)
            switch = (cost[best_previous][0] + 1, cost[best_previous][1])
            previous, base = (layout, stay) if stay is not None and stay <= switch else (best_previous, switch)
            arrived[layout] = (base[0], base[1] + batched)
            came_from[layout] = previous
        history.append(came_from)
        cost = arrived
    final = {layout: (c[0] + (layout != start), c[1]) for layout, c in cost.items()}
    layout = min(final, key=final.get)
    copies = final[layout][0]
    sequence = []
    for came_from in reversed(history):
        sequence.append(layout)
        layout = came_from[layout]
    steps = []
    for layout, pair in zip(reversed(sequence), pairs):
        position = _pair_position(layout, pair)
        steps.append(GateStep(layout, position, swapped=layout[position] == pair[1]))
    return ContractionPlan(tuple(axes), tuple(steps), copies)


def _relayout(x: torch.Tensor, sizes: dict[int, int], old: tuple[int, ...], new: tuple[int, ...]) -> torch.Tensor:
    shaped = x.reshape([sizes[a] for a in old])
    return shaped.permute([old.index(a) for a in new]).contiguous()


def apply_gates(x: torch.Tensor, gates: Sequence[torch.Tensor], plan: ContractionPlan) -> torch.Tensor:
    """T(θ) applied to every row of `x` [tokens, D] (i.e. `x @ T(θ)ᵀ`), following `plan`.

    `gates[k]` is the gate of pair `gate_pairs(N)[k]`, shaped (out[low], out[high], in[low], in[high]); it is
    cast to `x`'s dtype. `QuantaLinear` always passes float32 activations (it casts x to the gates' float32
    and leaves autocast for this chain), so under bf16 autocast hpcq computes T(θ)·x in float32 and casts only
    the result to the base GEMM's dtype: more accurate than the official code, which runs the chain in the
    activation's dtype (bf16), and therefore not bit-identical to it.
    """
    tokens = x.shape[0]
    sizes = {TOKENS: tokens, **dict(enumerate(plan.axes))}
    layout = _canonical(len(plan.axes))
    for step, gate in zip(plan.steps, gates):
        if step.layout != layout:
            x = _relayout(x, sizes, layout, step.layout)
            layout = step.layout
        if step.swapped:
            gate = gate.permute(1, 0, 3, 2)
        width = gate.shape[0] * gate.shape[1]
        matrix = gate.reshape(width, width).to(x.dtype)
        if step.position + 2 == len(layout):
            x = x.reshape(-1, width) @ matrix.T
        else:
            before = math.prod(sizes[a] for a in layout[: step.position])
            # An explicit bmm: torch.matmul would fold (2-D @ 3-D) through a transposed copy of x.
            x = torch.bmm(matrix.expand(before, width, width), x.reshape(before, width, -1))
    if layout != _canonical(len(plan.axes)):
        x = _relayout(x, sizes, layout, _canonical(len(plan.axes)))
    return x.reshape(tokens, -1)
