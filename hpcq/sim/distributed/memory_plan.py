"""Memory plan for a state vector split over MPI ranks, made before anything is allocated.

Per rank the `distributed` backend holds:

* state: the local slice of ψ (2**(n-k) amplitudes per sample), and of λ too when a gradient is wanted;
* workspace: one out-of-place temporary of the local slice (a layout permutation or a block's matmul
  output; the engine never holds two at once), plus cuStateVec's extra workspace on that path; none on one
  rank when the compiled kernels run the blocks in place (diagonal observables are then summed in chunks,
  and the backward's seed, summed in place, becomes λ);
* swap buffer: the bounded buffer through which index-bit swaps stream between ranks;
* runtime: Python, PyTorch and MPI themselves (measured: about 0.3 GiB resident per CPU rank).

A plan that does not fit names the smallest power-of-two rank count, and the node count at the given ranks
per node, that would; node memory is shared by the ranks on it, so adding ranks to a full node never helps.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcq.errors import ConfigError, ResourceError
from hpcq.sim.memory import format_bytes

#: cap on the swap buffer: large enough for full-bandwidth messages, small next to any large state
DEFAULT_SWAP_BUFFER_BYTES = 64 * 2**20
#: resident memory of one CPU rank before any state (interpreter, torch, mpi4py), rounded up
DEFAULT_RUNTIME_BYTES = 384 * 2**20
#: usable fraction of the memory limit: allocator slack and other processes
USABLE_FRACTION = 0.9


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per rank of one run of an n-qubit state split over `ranks` ranks (`ranks_per_node` per node)."""

    n_qubits: int
    ranks: int
    ranks_per_node: int
    batch: int
    amplitude_bytes: int
    gradient: bool
    state_bytes: int
    workspace_bytes: int
    swap_bytes: int
    runtime_bytes: int

    @property
    def global_qubits(self) -> int:
        return self.ranks.bit_length() - 1

    @property
    def local_qubits(self) -> int:
        return self.n_qubits - self.global_qubits

    @property
    def per_rank_bytes(self) -> int:
        return self.state_bytes + self.workspace_bytes + self.swap_bytes + self.runtime_bytes

    @property
    def nodes(self) -> int:
        return -(-self.ranks // self.ranks_per_node)

    @property
    def per_node_bytes(self) -> int:
        return min(self.ranks, self.ranks_per_node) * self.per_rank_bytes

    def fits(self, memory_per_rank: int | None, memory_per_node: int | None) -> bool:
        if memory_per_rank is not None and self.per_rank_bytes > USABLE_FRACTION * memory_per_rank:
            return False
        return memory_per_node is None or self.per_node_bytes <= USABLE_FRACTION * memory_per_node

    def describe(self) -> str:
        return (f"{format_bytes(self.per_rank_bytes)} per rank (state {format_bytes(self.state_bytes)}, "
                f"workspace {format_bytes(self.workspace_bytes)}, swap buffer {format_bytes(self.swap_bytes)}, "
                f"runtime {format_bytes(self.runtime_bytes)}), {format_bytes(self.per_node_bytes)} per node")


def _check_ranks(ranks: int, ranks_per_node: int) -> None:
    if not isinstance(ranks, int) or ranks < 1 or ranks & (ranks - 1):
        raise ConfigError(f"ranks={ranks!r} must be a power of two (1, 2, 4, ...): each global qubit halves the state")
    if not isinstance(ranks_per_node, int) or ranks_per_node < 1:
        raise ConfigError(f"ranks_per_node={ranks_per_node!r} must be a positive integer")


def plan_memory(
    n_qubits: int, *, ranks: int = 1, ranks_per_node: int | None = None, batch: int = 1, amplitude_bytes: int = 16,
    gradient: bool = False, swap_buffer_bytes: int = DEFAULT_SWAP_BUFFER_BYTES, extra_workspace_bytes: int = 0,
    runtime_bytes: int = DEFAULT_RUNTIME_BYTES, min_local_qubits: int = 1, in_place: bool = False,
) -> MemoryPlan:
    """The bytes each rank needs; `amplitude_bytes` is 4/8 (real32/64) or 8/16 (complex64/128). `in_place`:
    the blocks run in place (the compiled kernels, forward and backward), so one rank needs no workspace
    slice; with more ranks the index-bit swaps still permute into one."""
    ranks_per_node = ranks if ranks_per_node is None else ranks_per_node
    _check_ranks(ranks, ranks_per_node)
    if not isinstance(n_qubits, int) or n_qubits < 1:
        raise ConfigError(f"n_qubits={n_qubits!r} must be a positive integer")
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch={batch!r} must be a positive integer")
    local_qubits = n_qubits - (ranks.bit_length() - 1)
    if local_qubits < min_local_qubits:
        raise ConfigError(
            f"{ranks} ranks leave {local_qubits} local qubits of {n_qubits}, but fused blocks need "
            f"{min_local_qubits}; use at most {2 ** max(0, n_qubits - min_local_qubits)} ranks"
        )
    local_state = amplitude_bytes * batch * 2**local_qubits
    swap = 0 if ranks == 1 else min(swap_buffer_bytes, local_state // 2)
    return MemoryPlan(
        n_qubits=n_qubits, ranks=ranks, ranks_per_node=ranks_per_node, batch=batch,
        amplitude_bytes=amplitude_bytes, gradient=gradient,
        state_bytes=local_state * (2 if gradient else 1),
        workspace_bytes=(0 if in_place and ranks == 1 else local_state) + extra_workspace_bytes,
        swap_bytes=swap, runtime_bytes=runtime_bytes,
    )


def smallest_fitting(plan: MemoryPlan, memory_per_rank: int | None, memory_per_node: int | None,
                     **plan_options) -> MemoryPlan | None:
    """The plan with the fewest ranks (same ranks per node) that fits, or None if none does."""
    ranks = 1
    while ranks.bit_length() - 1 <= plan.n_qubits - plan_options.get("min_local_qubits", 1):
        candidate = plan_memory(plan.n_qubits, ranks=ranks, ranks_per_node=plan.ranks_per_node, batch=plan.batch,
                                amplitude_bytes=plan.amplitude_bytes, gradient=plan.gradient, **plan_options)
        if candidate.fits(memory_per_rank, memory_per_node):
            return candidate
        ranks *= 2
    return None


def require_fit(plan: MemoryPlan, memory_per_rank: int | None, memory_per_node: int | None,
                **plan_options) -> MemoryPlan:
    """Return `plan` if it fits; else raise ResourceError naming the smallest rank and node count that does."""
    if plan.fits(memory_per_rank, memory_per_node):
        return plan
    limits = ", ".join(f"{format_bytes(limit)} per {unit}" for unit, limit in
                       (("rank", memory_per_rank), ("node", memory_per_node)) if limit is not None)
    what = (f"a {plan.n_qubits}-qubit state (batch {plan.batch}, {plan.amplitude_bytes} B per amplitude"
            f"{', with gradient' if plan.gradient else ''}) on {plan.ranks} rank(s), {plan.ranks_per_node} per node, "
            f"needs {plan.describe()}, but only {limits} is available ({USABLE_FRACTION:.0%} usable)")
    fitting = smallest_fitting(plan, memory_per_rank, memory_per_node, **plan_options)
    if fitting is None:
        raise ResourceError(f"{what}. No power-of-two rank count at {plan.ranks_per_node} ranks per node fits; "
                            "use fewer qubits, a smaller batch or single precision.")
    raise ResourceError(
        f"{what}. Fix: use at least {fitting.ranks} ranks on {fitting.nodes} node(s) at {plan.ranks_per_node} "
        f"ranks per node ({fitting.describe()}), or fewer qubits, a smaller batch or single precision."
    )
