"""The `distributed` backend: one n-qubit state vector split over 2**k MPI ranks (the top k qubits global).

Launch under MPI (`mpiexec -n 4 python train.py`); every rank calls `expectation` with the same circuit,
weights and features and gets the same [batch, n_observables] result, differentiable like the statevector
backend (adjoint method; block gradients are allreduced). With one rank it runs locally without MPI.

Gates are fused into blocks (`hpcq.sim.compile`: 3 qubits where the compiled kernels apply every block in
place, else 5; at most n_local); a plan over the block list (`placement.plan_placement`) inserts batched
index-bit swaps before blocks that touch global qubits. Swaps go through mpi4py `Sendrecv` on contiguous
buffers (`exchange="mpi"`, CPU or GPU tensors, GPU data staged through host memory) or, on NVIDIA GPUs,
through cuStateVec's distributed index-bit-swap scheduler and state-vector swap worker
(`exchange="custatevec"`, needs the `gpu` extra and CUDA-aware MPI; checked against the cuquantum-python
26.9 bindings on CPU but not yet run on GPUs here, see `custatevec_swap.py`). `exchange="auto"` takes
cuStateVec only on NVIDIA GPUs whose MPI says it is CUDA-aware (`choose_exchange`).
A memory plan (`memory_plan.py`) runs before any allocation and stops an oversized run with the rank and node
count that would fit.
"""

from __future__ import annotations

import psutil
import torch

from hpcq.errors import ConfigError
from hpcq.sim.accelerator import accelerator_of, cuquantum_installed
from hpcq.sim.adjoint import AdjointExpectation
from hpcq.sim.compile import (
    COMPILED_FUSED_QUBITS, FUSED_QUBITS, FUSED_ROTATIONS, block_matrices, compile_circuit, rotation_angles,
)
from hpcq.sim.distributed.engine import Collectives, DistributedEngine
from hpcq.sim.distributed.exchange import (
    CommStats, ExchangeFacts, MpiIndexBitSwapper, choose_exchange, mpi_cuda_aware,
)
from hpcq.sim.distributed.memory_plan import DEFAULT_SWAP_BUFFER_BYTES, MemoryPlan, plan_memory, require_fit
from hpcq.sim.distributed.placement import PlacementPlan, plan_placement
from hpcq.sim.inputs import amplitude_state, validate_inputs, wants_gradient
from hpcq.sim.kernel.choice import compiled_kernels
from hpcq.sim.memory import amplitude_bytes
from hpcq.sim.observables import parse_observables
from hpcq.sim.precision import complex_of

EXCHANGES = ("auto", "mpi", "custatevec")
_RANKS_PER_NODE: dict[int, int] = {}


def default_comm():
    """MPI_COMM_WORLD when an MPI launcher started this process, else None (one rank)."""
    from hpcq.runtime import mpi_world

    return mpi_world().comm


def node_ranks(comm) -> int:
    """Ranks sharing this rank's node (one shared-memory split per communicator, cached)."""
    if comm is None:
        return 1
    key = comm.py2f()
    if key not in _RANKS_PER_NODE:
        from mpi4py import MPI

        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        _RANKS_PER_NODE[key] = comm.allreduce(node.Get_size(), op=MPI.MAX)
        node.Free()
    return _RANKS_PER_NODE[key]


def _memory_limits(comm, device: torch.device) -> tuple[int | None, int | None]:
    """(per rank, per node) memory, the smallest any rank sees, so every rank takes the same decision."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_rank, per_node = int(free), None
    else:
        per_rank, per_node = None, int(psutil.virtual_memory().available)
    if comm is not None and comm.Get_size() > 1:
        from mpi4py import MPI

        per_rank = None if per_rank is None else comm.allreduce(per_rank, op=MPI.MIN)
        per_node = None if per_node is None else comm.allreduce(per_node, op=MPI.MIN)
    return per_rank, per_node


def check_memory(n_qubits: int, ranks: int, batch: int, amplitude: int, gradient: bool, *, comm=None,
                 device: torch.device = torch.device("cpu"), ranks_per_node_: int | None = None,
                 memory_per_rank: int | None = None, memory_per_node: int | None = None,
                 swap_buffer_bytes: int = DEFAULT_SWAP_BUFFER_BYTES, extra_workspace_bytes: int = 0,
                 min_local_qubits: int = 1, in_place: bool = False) -> MemoryPlan:
    """The memory plan of a run, raising ResourceError (with the rank/node count that fits) if it won't fit.

    Limits default to what this node has free now; the interpreter is already resident, so the plan's
    runtime share is zero unless a limit is given explicitly.
    """
    explicit = memory_per_rank is not None or memory_per_node is not None
    if not explicit:
        memory_per_rank, memory_per_node = _memory_limits(comm, device)
    options = {"swap_buffer_bytes": swap_buffer_bytes, "extra_workspace_bytes": extra_workspace_bytes,
               "min_local_qubits": min_local_qubits, "in_place": in_place}
    if not explicit:
        options["runtime_bytes"] = 0
    per_node = ranks_per_node_ if ranks_per_node_ is not None else node_ranks(comm)
    plan = plan_memory(n_qubits, ranks=ranks, ranks_per_node=per_node, batch=batch, amplitude_bytes=amplitude,
                       gradient=gradient, **options)
    return require_fit(plan, memory_per_rank, memory_per_node, **options)


def exchange_facts(comm, device: torch.device, batch: int) -> ExchangeFacts:
    """This run's facts for `choose_exchange`; the CUDA-aware query only where it could matter (NVIDIA GPUs)."""
    from mpi4py import MPI

    accelerator = accelerator_of(device)
    custatevec = accelerator == "nvidia" and cuquantum_installed("cuquantum.bindings.custatevec")
    aware, how = mpi_cuda_aware() if custatevec else (False, "not queried (no NVIDIA GPU with cuStateVec)")
    return ExchangeFacts(accelerator, custatevec, MPI.get_vendor()[0], aware, how,
                         comm.Get_size() == MPI.COMM_WORLD.Get_size(), batch)


def _swapper(exchange: str, comm, device: torch.device, swap_buffer_bytes: int, stats: CommStats, batch: int = 1):
    """The index-bit swapper: "mpi" (mpi4py Sendrecv, any device), "custatevec" (cuStateVec's scheduler and
    swap worker; CUDA tensors, CUDA-aware MPI, all ranks of the world, power-of-two batch) or "auto"
    (`choose_exchange`: cuStateVec when all of that holds, else mpi)."""
    if exchange not in EXCHANGES:
        raise ConfigError(f"exchange={exchange!r} is unknown; use one of {', '.join(EXCHANGES)}")
    if comm is None or comm.Get_size() == 1:
        return None
    chosen = exchange if exchange != "auto" else choose_exchange(exchange, exchange_facts(comm, device, batch))[0]
    if chosen == "custatevec":
        from hpcq.sim.distributed.custatevec_swap import CuStateVecIndexBitSwapper

        return CuStateVecIndexBitSwapper(comm, device, swap_buffer_bytes, stats)
    return MpiIndexBitSwapper(comm, swap_buffer_bytes, stats)


def measurement_groups(paulis, n_local: int) -> list[list[int]]:
    """Observable indices in groups whose flipped (X/Y) qubits fit among the local qubits together."""
    groups: list[list[int]] = []
    flipped: list[set[int]] = []
    for index, pauli in enumerate(paulis):
        if len(pauli.flips) > n_local:
            raise ConfigError(f"observable {pauli.label(max(max(pauli.flips) + 1, n_local))!r} flips {len(pauli.flips)} "
                              f"qubits but only {n_local} are local per rank; use fewer ranks for this observable")
        for group, qubits in zip(groups, flipped):
            if len(qubits | pauli.flips) <= n_local:
                group.append(index)
                qubits |= pauli.flips
                break
        else:
            groups.append([index])
            flipped.append(set(pauli.flips))
    return groups


def _slice_kernels(kernel: str, circuit, device: torch.device, batch: int):
    """The compiled kernels when the forward's blocks will run through them (a real circuit on CPU, a
    power-of-two batch so the samples are index bits of the slice), else None."""
    library = compiled_kernels(kernel, circuit, device)
    if batch & (batch - 1) == 0:
        return library
    if kernel == "compiled":
        raise ConfigError(f"kernel='compiled' on the distributed backend needs a power-of-two batch, got {batch}; "
                          "use kernel='auto' (torch for this batch) or pad the batch")
    return None


def _in_place(library, batch: int) -> bool:
    """Every block runs through the compiled kernels, in place, forward and backward: one sample (with more,
    blocks that depend on per-sample features run in torch)."""
    return library is not None and batch == 1


def _default_width(in_place: bool) -> int:
    return COMPILED_FUSED_QUBITS if in_place else FUSED_QUBITS


def runs_in_place(circuit, device: torch.device, batch: int = 1, kernel: str = "auto") -> bool:
    """Whether `expectation` runs every block through the compiled kernels, in place (see `_in_place`)."""
    return _in_place(_slice_kernels(kernel, circuit, device, batch), batch)


def fused_qubits_for(circuit, device: torch.device, batch: int = 1, kernel: str = "auto") -> int:
    """The widest fused block `expectation` uses by default: narrow blocks when the compiled kernels run them
    all, wide ones when torch runs the blocks."""
    return _default_width(runs_in_place(circuit, device, batch, kernel))


def placement_for(blocks, n_qubits: int, n_global: int, paulis, groups: list[list[int]]) -> PlacementPlan:
    """Exchanges for the fused blocks, then for measuring each observable group."""
    measured = [sorted(set().union(*(paulis[i].flips for i in group))) for group in groups]
    return plan_placement([b.qubits for b in blocks], n_qubits, n_global, measured)


def expectation(
    circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables="Z",
    *,
    comm=None,
    exchange: str = "auto",
    max_fused_qubits: int | None = None,
    max_fused_rotations: int = FUSED_ROTATIONS,
    swap_buffer_bytes: int = DEFAULT_SWAP_BUFFER_BYTES,
    memory_per_rank: int | None = None,
    memory_per_node: int | None = None,
    ranks_per_node: int | None = None,
    stats: CommStats | None = None,
    kernel: str = "auto",
) -> torch.Tensor:
    """<O_i> for each sample, [batch, n_observables] on every rank; differentiable in weights and features.

    `comm`: an mpi4py communicator of 2**k ranks (default: the MPI world, or one rank when not launched
    under MPI). `stats` accumulates this rank's exchange count, bytes sent and seconds. `kernel` as for the
    statevector backend: "auto" applies the forward's real blocks on CPU in place with the compiled kernels
    (when a C compiler is available), "torch" never, "compiled" insists; the backward pass un-applies those
    blocks in place with the same kernels. `max_fused_qubits` defaults to `fused_qubits_for(...)`: 3 when the
    compiled kernels run every block, else 5.
    """
    weights, features, batch = validate_inputs(circuit, weights, features)
    comm = default_comm() if comm is None else comm
    size = 1 if comm is None else comm.Get_size()
    if size & (size - 1):
        raise ConfigError(f"the distributed backend needs a power-of-two number of ranks, got {size}; "
                          f"launch with mpiexec -n {1 << (size.bit_length() - 1)}")
    n, n_global = circuit.n_qubits, size.bit_length() - 1
    widest_gate = max((len(g.qubits) for g in circuit.gates), default=1)
    if n - n_global < widest_gate:
        raise ConfigError(f"{size} ranks leave {n - n_global} local qubits, fewer than the widest gate "
                          f"({widest_gate} qubits); use at most {2 ** (n - widest_gate)} ranks for {n} qubits")
    paulis = parse_observables(observables, n)
    gradient = wants_gradient(weights, features)
    library = _slice_kernels(kernel, circuit, weights.device, batch)
    in_place = _in_place(library, batch)
    width = max_fused_qubits or _default_width(in_place)
    compiled = compile_circuit(circuit, min(width, n - n_global), max_fused_rotations)
    complex_path = not compiled.is_real
    check_memory(n, size, batch, amplitude_bytes(weights.dtype, complex_path), gradient, comm=comm,
                 device=weights.device, ranks_per_node_=ranks_per_node, memory_per_rank=memory_per_rank,
                 memory_per_node=memory_per_node, swap_buffer_bytes=swap_buffer_bytes,
                 min_local_qubits=widest_gate, in_place=in_place)
    state_dtype = complex_of(weights.dtype) if complex_path else weights.dtype
    psi0 = None
    if circuit.amplitude_features is not None:
        psi0 = amplitude_state(features, circuit.amplitude_features, n).to(state_dtype)
    matrices = block_matrices(compiled, weights, features, complex_path)
    stats = CommStats() if stats is None else stats
    groups = measurement_groups(paulis, n - n_global)
    engine = DistributedEngine(compiled.blocks, placement_for(compiled.blocks, n, n_global, paulis, groups), groups,
                               paulis, complex_path, state_dtype, weights.device, Collectives(comm),
                               _swapper(exchange, comm, weights.device, swap_buffer_bytes, stats, batch), library)
    # the engine's backward un-applies the compiled blocks gate by gate: their gradient is by angle
    angles = rotation_angles(compiled, weights, features)
    return AdjointExpectation.apply(engine, batch, psi0, *matrices, angles)


__all__ = ["expectation", "check_memory", "CommStats", "exchange_facts", "fused_qubits_for", "measurement_groups", "node_ranks",
           "placement_for", "runs_in_place"]
