"""Where each qubit lives while a fused circuit runs on a state split over 2**k ranks, and when it moves.

The top k index bits of the state are *global* (bit j of the rank number holds one qubit), the rest are
*local* (an axis of every rank's slice). A block can only run when all its qubits are local, so before such
a block the plan swaps global qubits with local ones (an index-bit swap moves (1 − 2**−s) of each rank's
slice for s swapped bits, nearly the same for s = 1 as for s = 4). Swaps are therefore batched: at each
exchange the plan brings in every global qubit that is needed before the local qubit it replaces
(Belady's rule over the block list: evict the local qubit whose next use is farthest away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

INFINITY = float("inf")


@dataclass(frozen=True)
class Exchange:
    """Swap rank bit `positions[i]` with local qubit `local_qubits[i]` for every i, in one exchange."""

    positions: tuple[int, ...]
    local_qubits: tuple[int, ...]

    @property
    def bits(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class Apply:
    """Run fused block `block` (all its qubits are local here)."""

    block: int


@dataclass(frozen=True)
class Measure:
    """Measure observable group `group` (every qubit it flips is local here)."""

    group: int


Step = Union[Exchange, Apply, Measure]


@dataclass(frozen=True)
class PlacementPlan:
    """The initial global qubits (rank bit j holds `initial_global[j]`) and the steps in order."""

    n_qubits: int
    initial_global: tuple[int, ...]
    steps: tuple[Step, ...]

    @property
    def exchanges(self) -> list[Exchange]:
        return [s for s in self.steps if isinstance(s, Exchange)]

    @property
    def initial_local_layout(self) -> tuple[int, ...]:
        """Local qubits, most significant axis first (canonical order: qubit 0 least significant)."""
        held = set(self.initial_global)
        return tuple(q for q in range(self.n_qubits - 1, -1, -1) if q not in held)


def _next_use(uses: Sequence[frozenset[int]], start: int, qubit: int) -> float:
    for index in range(start, len(uses)):
        if qubit in uses[index]:
            return index
    return INFINITY


def _exchange_for(uses: Sequence[frozenset[int]], at: int, global_qubits: list[int], n_qubits: int) -> Exchange | None:
    """The swap that makes `uses[at]` local, extended by every later global qubit worth bringing in."""
    held = set(global_qubits)
    if not uses[at] & held:
        return None
    incoming = sorted(held, key=lambda q: _next_use(uses, at, q))
    evictable = sorted((q for q in range(n_qubits) if q not in held and q not in uses[at]),
                       key=lambda q: -_next_use(uses, at, q))
    positions, leaving = [], []
    for qubit in incoming:
        need = _next_use(uses, at, qubit)
        if need == INFINITY or not evictable or (need > at and _next_use(uses, at, evictable[0]) <= need):
            break  # not needed again, or the local qubit would be needed no later than the one it makes room for
        positions.append(global_qubits.index(qubit))
        leaving.append(evictable.pop(0))
    return Exchange(tuple(positions), tuple(leaving))


def plan_placement(block_qubits: Sequence[Sequence[int]], n_qubits: int, n_global: int,
                   measure_qubits: Sequence[Sequence[int]] = ((),)) -> PlacementPlan:
    """Plan the exchanges for blocks acting on `block_qubits` (in order), then for each observable group
    (whose flipped qubits `measure_qubits[g]` must be local when it is measured).

    The top `n_global` qubits start global, as in cuStateVec's layout (rank = high index bits).
    """
    uses = [frozenset(q) for q in block_qubits] + [frozenset(q) for q in measure_qubits]
    widest = max((len(u) for u in uses), default=0)
    if widest > n_qubits - n_global:
        raise ValueError(f"a step needs {widest} local qubits but only {n_qubits - n_global} are local")
    global_qubits = list(range(n_qubits - n_global, n_qubits))
    initial = tuple(global_qubits)
    steps: list[Step] = []
    for index in range(len(uses)):
        exchange = _exchange_for(uses, index, global_qubits, n_qubits)
        if exchange is not None:
            for position, qubit in zip(exchange.positions, exchange.local_qubits):
                global_qubits[position] = qubit
            steps.append(exchange)
        steps.append(Apply(index) if index < len(block_qubits) else Measure(index - len(block_qubits)))
    return PlacementPlan(n_qubits, initial, tuple(steps))
