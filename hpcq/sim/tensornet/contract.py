"""Contraction along a plan with pairwise `torch.einsum` (CPU or CUDA tensors).

Under autograd a sweep is checkpointed row by row: each row keeps only its inputs and recomputes its
intermediates in backward, so the backward pass holds one boundary per row rather than every intermediate.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from hpcq.errors import ResourceError
from hpcq.sim.tensornet.paths import Plan

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@lru_cache(maxsize=4096)
def _equation(left: tuple[int, ...], right: tuple[int, ...], out: tuple[int, ...]) -> str:
    """A two-operand einsum equation for index ids (letters assigned per step, so ids may be any ints)."""
    letters: dict[int, str] = {}
    for i in (*left, *right):
        if i not in letters:
            if len(letters) == len(_LETTERS):
                raise ResourceError("a contraction step joins more than 52 indices; the light cone is too "
                                    "wide for the tensor network backend, use backend='statevector'")
            letters[i] = _LETTERS[len(letters)]
    spell = lambda indices: "".join(letters[i] for i in indices)  # noqa: E731
    return f"{spell(left)},{spell(right)}->{spell(out)}"


def _run_steps(tensors: dict[int, torch.Tensor], plan: Plan, first: int, last: int) -> torch.Tensor:
    """Run steps first..last-1; step s makes tensor id `plan.n_inputs + s`. Returns the last result."""
    for s in range(first, last):
        (a, b), (left, right, out) = plan.steps[s], plan.equations[s]
        tensors[plan.n_inputs + s] = torch.einsum(_equation(left, right, out), tensors.pop(a), tensors.pop(b))
    return tensors[plan.n_inputs + last - 1]


def _row(plan: Plan, first: int, last: int, boundary: torch.Tensor, *leaves: torch.Tensor) -> torch.Tensor:
    """Sweep steps first..last-1 (one row): fold the row's tensors into the boundary."""
    tensors = {plan.steps[first][0]: boundary,
               **{b: leaf for (_, b), leaf in zip(plan.steps[first:last], leaves)}}
    return _run_steps(tensors, plan, first, last)


class _CheckpointedRow(torch.autograd.Function):
    """One row of a sweep that keeps only its inputs and recomputes its intermediates in backward.

    (torch.utils.checkpoint would do the same, but its first call imports torch._dynamo: seconds per process.)
    """

    @staticmethod
    def forward(ctx, plan: Plan, first: int, last: int, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.row = (plan, first, last)
        ctx.save_for_backward(*tensors)
        with torch.no_grad():
            return _row(plan, first, last, *tensors)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        inputs = [t.detach().requires_grad_(t.requires_grad) for t in ctx.saved_tensors]
        with torch.enable_grad():
            result = _row(*ctx.row, *inputs)
        wanted = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad(result, wanted, grad_out, allow_unused=True) if wanted else ())
        return (None, None, None, *(next(grads) if t.requires_grad else None for t in inputs))


def contract_torch(plan: Plan, operands: list[torch.Tensor], checkpoint_rows: bool) -> torch.Tensor:
    """Contract along the plan with pairwise `torch.einsum`; a sweep is checkpointed row by row when asked
    (under autograd), so backward keeps one boundary per row instead of every intermediate."""
    tensors = dict(enumerate(operands))
    if not (checkpoint_rows and plan.segments):
        return _run_steps(tensors, plan, 0, len(plan.steps))
    if plan.segments[0]:
        _run_steps(tensors, plan, 0, plan.segments[0])  # the absorption prefix: small tensors only
    bounds = [*plan.segments, len(plan.steps)]
    result = None
    for first, last in zip(bounds[:-1], bounds[1:]):
        boundary = tensors.pop(plan.steps[first][0])
        leaves = [tensors.pop(b) for _, b in plan.steps[first:last]]
        result = _CheckpointedRow.apply(plan, first, last, boundary, *leaves)
        tensors[plan.n_inputs + last - 1] = result
    return result
