"""The official QuanTA einsum expressions, generated exactly as the reference code does.

These are the specification the fast contraction (`contraction.py`) is checked against: the training
expression applies the gates to an input with any leading batch dimensions, and the merge expression contracts
the gates alone into the dense (out axes…, in axes…) operator.

Symbol bookkeeping as in the official code: each time a gate touches axis k, the symbol index of that axis
moves on by N, so axis k carries k, k+N, k+2N, … and no two indices collide. For N = 3 the training expression
is `...abc,efbc,diaf,ghde->...ghi` and the merge expression `efbc,diaf,ghde->ghiabc`.
"""

from __future__ import annotations

from functools import lru_cache

import opt_einsum
import torch
from opt_einsum import get_symbol

from hpcq.adapters.quanta.axes import gate_pairs


def _gate_terms(n_axes: int) -> tuple[list[str], str, str]:
    current = list(range(n_axes))
    terms = []
    for low, high in gate_pairs(n_axes):
        inputs = get_symbol(current[low]) + get_symbol(current[high])
        current[low] += n_axes
        current[high] += n_axes
        # Gate storage: (out[low], out[high], in[low], in[high]), output indices first as in nn.Linear.
        terms.append(get_symbol(current[low]) + get_symbol(current[high]) + inputs)
    first = "".join(get_symbol(k) for k in range(n_axes))
    last = "".join(get_symbol(index) for index in current)
    return terms, first, last


def train_expression_string(n_axes: int) -> str:
    """The training einsum: `...<in axes>,<gate>,…->...<out axes>`."""
    terms, first, last = _gate_terms(n_axes)
    return f"...{first},{','.join(terms)}->...{last}"


def merge_expression_string(n_axes: int) -> str:
    """The merge ("eval") einsum: the gates alone → `<out axes><in axes>`."""
    terms, first, last = _gate_terms(n_axes)
    return f"{','.join(terms)}->{last}{first}"


@lru_cache(maxsize=None)
def merge_expression(axes: tuple[int, ...]) -> opt_einsum.contract.ContractExpression:
    """The merge einsum as an opt_einsum expression whose contraction path is computed once per axes.

    The path search is opt_einsum's "auto-hq", not the official per-N choice ("optimal", "branch-all",
    "branch-2"): it finds paths as cheap or cheaper (e.g. 2.2e9 vs 9.1e9 operations for 4-4-4-4-4-4) in well
    under a second, where "branch-all" and "branch-2" spend 5 to 10 s on some 5- and 7-axis splits.
    """
    shapes = [(axes[low], axes[high], axes[low], axes[high]) for low, high in gate_pairs(len(axes))]
    return opt_einsum.contract_expression(merge_expression_string(len(axes)), *shapes,
                                          optimize="auto-hq")


def dense_operator(gates: list[torch.Tensor], axes: tuple[int, ...]) -> torch.Tensor:
    """T(θ) as a D×D matrix (rows: output, columns: input) through the official merge einsum."""
    dim = 1
    for size in axes:
        dim *= size
    return merge_expression(tuple(axes))(*gates, backend="torch").reshape(dim, dim)
