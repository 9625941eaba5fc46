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
