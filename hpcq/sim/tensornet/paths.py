"""Contraction paths for a light-cone network: three planners, a plan cache per circuit, and a memory check.

Besides opt_einsum's greedy path (and cotengra's, when asked for) the planner tries a *row sweep*: absorb
one- and two-leg tensors into a neighbour, then contract the rows one qubit after another into a boundary
tensor, as an MPS-style sweep would. Its width is set by the bonds crossing a cut between qubits (for the
paper's ring ansatz with connectivity 1: two per ring layer, in the ket and in the bra), not by the width of
the circuit. "auto" keeps whichever of sweep and greedy costs fewer FLOPs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import opt_einsum
import psutil
import torch

from hpcq.circuits.circuit import Circuit, CircuitCache
from hpcq.errors import ConfigError, ResourceError
from hpcq.sim.memory import format_bytes
from hpcq.sim.observables import Pauli
from hpcq.sim.tensornet.network import BATCH, Network, build_network

OPTIMIZERS = ("auto", "sweep", "greedy", "cotengra")
#: an intermediate may use at most this fraction of the memory available when the plan is checked
MEMORY_FRACTION = 0.25


class _Graph:
    """Live tensors during a contraction: replays pairwise steps and records their cost and equations."""

    def __init__(self, inputs: Sequence[tuple[int, ...]], output: tuple[int, ...], batch: int):
        self.tensors: dict[int, tuple[int, ...]] = dict(enumerate(inputs))
        self.output = set(output)
        self.batch = batch
        self.holders: dict[int, set[int]] = defaultdict(set)
        for tid, indices in self.tensors.items():
            for i in indices:
                self.holders[i].add(tid)
        self.next_id = len(inputs)
        self.steps: list[tuple[int, int]] = []
        self.equations: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = []
        self.flops = 0.0
        self.largest = 1.0

    def size(self, indices) -> float:
        return float(math.prod(self.batch if i == BATCH else 2 for i in indices))

    def contract(self, a: int, b: int) -> int:
        left, right = self.tensors.pop(a), self.tensors.pop(b)
        union = tuple(dict.fromkeys(left + right))
        for i in left:
            self.holders[i].discard(a)
        for i in right:
            self.holders[i].discard(b)
        kept = tuple(i for i in union if i in self.output or self.holders[i])
        new = self.next_id
        self.next_id += 1
        self.tensors[new] = kept
        for i in kept:
            self.holders[i].add(new)
        self.steps.append((a, b))
        self.equations.append((left, right, kept))
        self.flops += self.size(union)
        self.largest = max(self.largest, self.size(kept))
        return new

    def neighbours(self, tid: int) -> set[int]:
        return {other for i in self.tensors[tid] if i != BATCH for other in self.holders[i]} - {tid}


@dataclass(frozen=True)
class Plan:
    """A pairwise contraction path (SSA ids), its einsum steps, cost, and the row boundaries of a sweep."""

    method: str
    steps: tuple[tuple[int, int], ...]
    equations: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    flops: float
    largest: float
    segments: tuple[int, ...]  # sweep: the first step of each row (after the absorption prefix); else ()
    n_inputs: int  # step s makes tensor id n_inputs + s


def _absorb_small(graph: _Graph, rows: dict[int, int], order: dict[int, int]) -> None:
    """Contract every tensor with at most two legs (batch aside) into a neighbour on its own row."""
    pending = sorted(graph.tensors, key=lambda t: order[t])
    while pending:
        tid = pending.pop(0)
        if tid not in graph.tensors or len([i for i in graph.tensors[tid] if i != BATCH]) > 2:
            continue
        near = graph.neighbours(tid)
        if not near:
            continue
        same_row = [t for t in near if rows[t] == rows[tid]] or list(near)
        target = min(same_row, key=lambda t: (len(graph.tensors[t]), order[t]))
        new = graph.contract(tid, target)
        rows[new], order[new] = rows[target], order[target]
        pending.append(new)


def _sweep_plan(network: Network, batch: int) -> Plan:
    graph = _Graph(network.inputs, network.output, batch)
    rows = dict(enumerate(network.rows))
    order = {t: t for t in range(len(network.inputs))}
    _absorb_small(graph, rows, order)
    rank = {q: r for r, q in enumerate(network.qubits)}
    remaining = sorted(graph.tensors, key=lambda t: (rank[rows[t]], order[t]))
    segments = [len(graph.steps)]
    boundary = remaining[0]
    for previous, tid in zip(remaining, remaining[1:]):
        if rows[tid] != rows[previous] and len(graph.steps) > segments[-1]:
            segments.append(len(graph.steps))
        boundary = graph.contract(boundary, tid)
    return Plan("sweep", tuple(graph.steps), tuple(graph.equations), graph.flops, graph.largest,
                tuple(segments), len(network.inputs))


def _ssa_plan(method: str, network: Network, batch: int, ssa_path) -> Plan:
    graph = _Graph(network.inputs, network.output, batch)
    ids = list(range(len(network.inputs)))
    for step in ssa_path:
        if len(step) == 1:
            continue
        current = ids[step[0]]
        for other in step[1:]:
            current = graph.contract(current, ids[other])
        ids.append(current)
    leftovers = sorted(graph.tensors)  # disconnected pieces (e.g. scalars): multiply them in
    while len(leftovers) > 1:
        leftovers = sorted([graph.contract(leftovers[0], leftovers[1])] + leftovers[2:])
    return Plan(method, tuple(graph.steps), tuple(graph.equations), graph.flops, graph.largest, (),
                len(network.inputs))


def _symbolic(network: Network, batch: int):
    letters = {i: opt_einsum.get_symbol(n) for n, i in
               enumerate(sorted({i for indices in network.inputs for i in indices}))}
    inputs = [frozenset(letters[i] for i in indices) for indices in network.inputs]
    sizes = {letters[i]: (batch if i == BATCH else 2) for i in letters}
    return inputs, frozenset(letters[i] for i in network.output), sizes


def _greedy_plan(network: Network, batch: int) -> Plan:
    inputs, output, sizes = _symbolic(network, batch)
    return _ssa_plan("greedy", network, batch, opt_einsum.paths.ssa_greedy_optimize(inputs, output, sizes))


def _cotengra_plan(network: Network, batch: int) -> Plan:
    import cotengra

    inputs, output, sizes = _symbolic(network, batch)
    optimizer = cotengra.HyperOptimizer(methods=["greedy"], max_repeats=16, parallel=False, progbar=False)
    tree = optimizer.search([tuple(sorted(i)) for i in inputs], tuple(sorted(output)), sizes)
    return _ssa_plan("cotengra", network, batch, tree.get_ssa_path())


_PLANNERS = {"sweep": _sweep_plan, "greedy": _greedy_plan, "cotengra": _cotengra_plan}
_PLANS: CircuitCache[tuple[Network, Plan]] = CircuitCache()


def plan_network(network: Network, batch: int, optimize: str = "auto") -> Plan:
    """The contraction plan: `optimize` = "sweep", "greedy", "cotengra", or "auto" (the cheaper of sweep and
    greedy)."""
    if optimize not in OPTIMIZERS:
        raise ConfigError(f"optimize={optimize!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    if optimize != "auto":
        return _PLANNERS[optimize](network, batch)
    candidates = [_sweep_plan(network, batch), _greedy_plan(network, batch)]
    return min(candidates, key=lambda plan: (plan.flops, plan.largest))


def cached_plan(circuit: Circuit, pauli: Pauli, batch: int, optimize: str) -> tuple[Network, Plan]:
    """`pauli`'s network and plan, built once per circuit version, batch and `optimize`."""
    def build() -> tuple[Network, Plan]:
        network = build_network(circuit.gates, pauli, circuit.n_qubits)
        return network, plan_network(network, batch, optimize)

    return _PLANS.get(circuit, (pauli, batch, optimize), build)


def check_plan_fits(plan: Plan, amplitude_bytes: int, device: torch.device, pauli: Pauli,
                    n_qubits: int) -> None:
    """ResourceError, naming the fix, when the plan's largest intermediate needs more than MEMORY_FRACTION of
    the memory free on `device`."""
    largest = plan.largest * amplitude_bytes
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        available = psutil.virtual_memory().available
    if largest > MEMORY_FRACTION * available:
        raise ResourceError(
            f"the light-cone network of {pauli.label(n_qubits)!r} needs an intermediate tensor of "
            f"{format_bytes(largest)} (2^{math.log2(plan.largest):.1f} entries, path '{plan.method}'), "
            f"more than {MEMORY_FRACTION:.0%} of the {format_bytes(available)} available on {device}. Fix: a "
            "smaller batch, a shallower or less connected circuit, or backend='statevector'/'distributed' "
            "for this width."
        )
