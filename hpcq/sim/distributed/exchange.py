"""Index-bit swaps between MPI ranks through mpi4py buffer calls (no pickling), with byte and time counts.

To swap rank bits P = (p_0..p_{s-1}) with local qubits L = (l_0..l_{s-1}), every rank first orders its slice
so that L are the leading axes; its slice is then 2**s contiguous chunks, chunk b holding the amplitudes whose
L bits equal b. The 2**s ranks that differ only in the P bits form a group; in round j = 1..2**s−1 each rank
trades chunk (v ⊕ j) with the rank whose P bits are v ⊕ j (v: its own P bits), so the rounds pair ranks
symmetrically and never deadlock. Afterwards chunk a holds what the rank with P bits a had in chunk v: the
leading axes now carry the old global qubits and the P bits carry L. Chunks stream in pieces through one
bounded buffer (`swap_buffer_bytes`), so the exchange costs that buffer rather than a second slice.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import torch

from hpcq.sim.layout import Layout, permute_state


@dataclass
class CommStats:
    """What the exchanges of one or more runs cost on this rank."""

    exchanges: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0

    def add(self, other: "CommStats") -> None:
        self.exchanges += other.exchanges
        self.bytes_sent += other.bytes_sent
        self.seconds += other.seconds


def partner_rank(rank: int, positions: tuple[int, ...], group_value: int) -> int:
    """The rank equal to `rank` except that its bits at `positions` spell `group_value` (bit i at positions[i])."""
    for i, position in enumerate(positions):
        rank = (rank & ~(1 << position)) | (((group_value >> i) & 1) << position)
    return rank


def group_value(rank: int, positions: tuple[int, ...]) -> int:
    """The bits of `rank` at `positions`, bit i taken from positions[i]."""
    return sum(((rank >> position) & 1) << i for i, position in enumerate(positions))


def leading_for_exchange(layout: Layout, local_qubits: tuple[int, ...]) -> Layout:
    """`layout` with `local_qubits` leading, local_qubits[i] as bit i of the leading index (MSB first)."""
    leading = tuple(reversed(local_qubits))
    return leading + tuple(q for q in layout if q not in set(leading))


class MpiIndexBitSwapper:
    """Performs `Exchange` steps on a rank's local slice with mpi4py Sendrecv over contiguous pieces."""

    def __init__(self, comm, swap_buffer_bytes: int, stats: CommStats | None = None):
        from mpi4py import MPI  # only ranks that exchange need MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.swap_buffer_bytes = max(1, int(swap_buffer_bytes))
        self.stats = stats if stats is not None else CommStats()
        self._buffer: torch.Tensor | None = None

    def _host_buffer(self, like: torch.Tensor, elements: int) -> torch.Tensor:
        if self._buffer is None or self._buffer.dtype != like.dtype or self._buffer.numel() < elements:
            self._buffer = torch.empty(elements, dtype=like.dtype)
        return self._buffer[:elements]

    def swap(self, state: torch.Tensor, layout: Layout, global_qubits: tuple[int, ...],
             positions: tuple[int, ...], local_qubits: tuple[int, ...]) -> tuple[torch.Tensor, Layout, tuple[int, ...]]:
        """Exchange; returns the state, its new local layout and the new global qubits (by rank bit)."""
        target = leading_for_exchange(layout, local_qubits)
        state = permute_state(state, layout, target)
        start = time.perf_counter()
        s = len(positions)
        chunks = state.view(2**s, -1)
        mine = group_value(self.rank, positions)
        for round_index in range(1, 2**s):
            other = mine ^ round_index
            self._trade(chunks[other], partner_rank(self.rank, positions, other))
        self.stats.seconds += time.perf_counter() - start
        self.stats.exchanges += 1
        arrived = tuple(global_qubits[p] for p in positions)
        new_global = list(global_qubits)
        for position, qubit in zip(positions, local_qubits):
            new_global[position] = qubit
        return state, tuple(reversed(arrived)) + target[s:], tuple(new_global)

    def _trade(self, chunk: torch.Tensor, partner: int) -> None:
        """Replace `chunk` by the partner's matching chunk, piece by piece through the swap buffer."""
        piece = max(1, self.swap_buffer_bytes // chunk.element_size())
        for begin in range(0, chunk.numel(), piece):
            part = chunk[begin:begin + piece]
            buffer = self._host_buffer(part, part.numel())
            outgoing = part if part.device.type == "cpu" else part.cpu()
            self.comm.Sendrecv(_mpi_buffer(outgoing), dest=partner, sendtag=7,
                               recvbuf=_mpi_buffer(buffer), source=partner, recvtag=7)
            part.copy_(buffer)
            self.stats.bytes_sent += part.numel() * part.element_size()


def _mpi_buffer(tensor: torch.Tensor):
    """A zero-copy buffer view of a contiguous CPU tensor (complex as complex, so MPI sees the true count)."""
    return tensor.numpy()


# ------------------------------------------------------------------------------------------ which exchange

#: MPI libraries with a cuStateVec built-in communicator
CUSTATEVEC_MPI_VENDORS = ("Open MPI", "MPICH")


@dataclass(frozen=True)
class ExchangeFacts:
    """What decides the exchange of a distributed run: where the state lives ("cpu", "nvidia", "amd"), whether
    cuStateVec's bindings import, the MPI library, whether it takes CUDA device pointers (and how that was
    found), whether the communicator is MPI_COMM_WORLD, and the batch."""

    accelerator: str
    custatevec: bool
    mpi_vendor: str
    cuda_aware: bool
    cuda_aware_how: str
    spans_world: bool
    batch: int


def choose_exchange(requested: str, facts: ExchangeFacts) -> tuple[str, str]:
    """("mpi" or "custatevec", why). A named exchange is honoured; "auto" takes cuStateVec's device-to-device
    swap worker only when every condition it needs holds, else the host-staged mpi4py exchange."""
    if requested != "auto":
        return requested, f"exchange={requested!r} was asked for"
    blockers = [
        (facts.accelerator == "cpu", "the state is in host memory"),
        (facts.accelerator == "amd", "AMD GPU (ROCm): cuStateVec runs on NVIDIA GPUs only"),
        (not facts.custatevec, "cuquantum-python is not installed (pip install 'hpcq[gpu]')"),
        (facts.mpi_vendor not in CUSTATEVEC_MPI_VENDORS,
         f"cuStateVec has communicators for {' and '.join(CUSTATEVEC_MPI_VENDORS)}, not {facts.mpi_vendor}"),
        (not facts.cuda_aware, f"MPI is not known to be CUDA-aware: {facts.cuda_aware_how}"),
        (not facts.spans_world,
         "the communicator is not MPI_COMM_WORLD (cuStateVec's communicators use the world)"),
        (facts.batch & (facts.batch - 1) != 0, f"batch {facts.batch} is not a power of two"),
    ]
    for blocked, why in blockers:
        if blocked:
            return "mpi", f"host-staged mpi4py exchange: {why}"
    return "custatevec", ("cuStateVec's device-to-device swap worker: NVIDIA GPU, CUDA-aware MPI "
                          f"({facts.cuda_aware_how})")


def _libmpi_function(name: str):
    """A function of the MPI library mpi4py loaded (libmpi.so.40, libmpi.so.12, libmpi_cray.so.12, ...: found
    among this process's mapped files, since mpi4py loads it privately), or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            files = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    except OSError:  # not Linux
        return None
    for path in sorted(f for f in files if re.match(r"libmpi[\w-]*\.so", os.path.basename(f))):
        function = getattr(ctypes.CDLL(path), name, None)
        if function is not None:
            return function
    return None


def mpi_cuda_aware(environ: dict[str, str] | None = None) -> tuple[bool, str]:
    """(whether the MPI library accepts CUDA device buffers, how that was found): Open MPI's (and MPICH >= 4.1's)
    MPIX_Query_cuda_support() after MPI_Init, else Cray MPICH's MPICH_GPU_SUPPORT_ENABLED=1; otherwise it is
    not known to be, and GPU data must go through host memory."""
    from mpi4py import MPI  # initializes MPI, which MPIX_Query_cuda_support needs

    env = os.environ if environ is None else environ
    vendor = "{} {}".format(MPI.get_vendor()[0], ".".join(map(str, MPI.get_vendor()[1])))
    query = _libmpi_function("MPIX_Query_cuda_support")
    if query is not None:
        answer = int(query())
        return answer == 1, f"{vendor}: MPIX_Query_cuda_support() = {answer}"
    if env.get("MPICH_GPU_SUPPORT_ENABLED") == "1":
        return True, f"{vendor} (Cray MPICH): MPICH_GPU_SUPPORT_ENABLED=1"
    return False, f"{vendor} has no MPIX_Query_cuda_support and MPICH_GPU_SUPPORT_ENABLED is not 1"
