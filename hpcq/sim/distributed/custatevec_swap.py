"""`Exchange` steps through cuStateVec's distributed index-bit-swap scheduler and state-vector swap worker.

Same interface as `MpiIndexBitSwapper.swap`, but the data never leaves the GPU through Python: cuStateVec
schedules the swap of global index bits (rank bits) with local ones in batches and its swap worker moves the
segments between ranks (CUDA-aware MPI through the built-in Open MPI / MPICH communicator). The exchange is
in place, so no layout permutation is needed: after the swap the local index bit that held qubit l holds
the incoming global qubit, and the rank bit holds l.

Constraints, from the cuStateVec API (`cuquantum.bindings.custatevec`, cuquantum-python 25.09 to 26.9, sample
`distributed_index_bit_swap_mpi.py`):

* a sub state vector is 2**m complex amplitudes, so the [2**n_local, batch] slice is seen as one sub-SV with
  the batch as its lowest index bits (batch must be a power of two), and a real slice (the paper ansatz)
  as complex pairs of neighbouring reals, whose lowest memory bit then may not be swapped (the slice is
  permuted first when it would be);
* the built-in communicators use MPI_COMM_WORLD and sub-SV index = rank, so `comm` must span the world;
* MPI must be CUDA-aware (device pointers in MPI_Isend/Irecv): `exchange="auto"` checks it first
  (`hpcq.sim.distributed.exchange.mpi_cuda_aware`).

Its calls are checked on CPU against the installed bindings' argument lists and `SVSwapParameters` type
(tests/test_sim_custatevec.py); it has not yet run on GPUs here (none was available): the GPU test in
tests/test_sim_distributed.py compares it with the statevector backend (`hpcq selftest --gpu` runs it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim.distributed.exchange import CommStats
from hpcq.sim.layout import Layout, permute_state
from hpcq.sim.precision import complex_of

#: transfer workspace per swap worker; the sample's 64 MiB ("larger ... can improve performance")
TRANSFER_WORKSPACE_BYTES = 64 * 2**20


def parameter(parameters: Any, name: str) -> int:
    """A field of cuStateVec's `SVSwapParameters` as a Python int. The bindings (26.9) return each field as a
    one-element array (a view into the struct), which `int()` refuses under NumPy >= 2.4."""
    return int(np.asarray(getattr(parameters, name)).item())


def run_swap_batches(cusv: Any, handle: int, scheduler: int, worker: int, batches: int, rank: int) -> int:
    """Execute every swap batch the scheduler planned for this rank (sub state vector `rank`), each with its
    peer; returns the elements this rank sent."""
    sent = 0
    for index in range(batches):
        parameters = cusv.dist_index_bit_swap_scheduler_get_parameters(handle, scheduler, index, rank)
        cusv.sv_swap_worker_set_parameters(handle, worker, parameters, parameter(parameters, "dst_sub_sv_index"))
        size = parameter(parameters, "transfer_size")
        cusv.sv_swap_worker_execute(handle, worker, 0, size)
        sent += size
    return sent


class CuStateVecIndexBitSwapper:
    """Performs `Exchange` steps on a rank's GPU slice with cuStateVec's distributed swap machinery."""

    def __init__(self, comm, device: torch.device, swap_buffer_bytes: int, stats: CommStats | None = None):
        try:
            import cupy
            from cuquantum import cudaDataType
            from cuquantum.bindings import custatevec
        except ImportError as err:
            raise MissingDependencyError("cuquantum-python-cu12", "gpu",
                                         "index-bit swaps through cuStateVec (exchange='custatevec')") from err
        from mpi4py import MPI

        if comm.Get_size() != MPI.COMM_WORLD.Get_size():
            raise ConfigError("exchange='custatevec' needs the state spread over all MPI ranks (cuStateVec's built-in "
                              "communicators use MPI_COMM_WORLD); use exchange='mpi' for a sub-communicator")
        self.cusv, self.data_types, self.cupy = custatevec, cudaDataType, cupy
        self.rank = comm.Get_rank()
        self.device = device
        self.transfer_bytes = max(TRANSFER_WORKSPACE_BYTES, int(swap_buffer_bytes))
        self.stats = stats if stats is not None else CommStats()
        vendor = MPI.get_vendor()[0]
        kinds = {"Open MPI": custatevec.CommunicatorType.OPENMPI, "MPICH": custatevec.CommunicatorType.MPICH}
        if vendor not in kinds:
            raise ConfigError(f"cuStateVec has built-in communicators for Open MPI and MPICH, not {vendor}; "
                              "use exchange='mpi'")
        with torch.cuda.device(device):
            self.handle = custatevec.create()
            # mpi4py loaded libmpi already; naming it lets cuStateVec find the symbols (NVIDIA/cuQuantum#31)
            self.communicator = custatevec.communicator_create(self.handle, kinds[vendor], "libmpi.so")
            self.event = cupy.cuda.Event(disable_timing=True, interprocess=True)
        self._schedulers: dict[tuple[int, int], int] = {}

    def _scheduler(self, n_global: int, n_local_bits: int) -> int:
        key = (n_global, n_local_bits)
        if key not in self._schedulers:
            self._schedulers[key] = self.cusv.dist_index_bit_swap_scheduler_create(self.handle, n_global, n_local_bits)
        return self._schedulers[key]

    def swap(self, state: torch.Tensor, layout: Layout, global_qubits: tuple[int, ...],
             positions: tuple[int, ...], local_qubits: tuple[int, ...]) -> tuple[torch.Tensor, Layout, tuple[int, ...]]:
        """Exchange; returns the state, its new local layout and the new global qubits (by rank bit)."""
        batch = state.shape[-1]
        if batch & (batch - 1):
            raise ConfigError(f"exchange='custatevec' needs a power-of-two batch (the batch is part of the sub state "
                              f"vector's index bits), got {batch}; use exchange='mpi'")
        real = not state.is_complex()
        if real and batch == 1 and layout[-1] in local_qubits:
            # the lowest memory bit pairs reals into one complex amplitude: move that qubit off it first
            target = (layout[-1],) + layout[:-1]
            state, layout = permute_state(state, layout, target), target
        batch_bits = batch.bit_length() - 1
        n_local = len(layout)
        bit_of = {q: (n_local - 1 - axis) + batch_bits - (1 if real else 0) for axis, q in enumerate(layout)}
        n_local_bits = n_local + batch_bits - (1 if real else 0)
        swaps = [(bit_of[q], n_local_bits + p) for q, p in zip(local_qubits, positions)]
        state = state.contiguous()
        start = time.perf_counter()
        moved = self._execute(state, len(global_qubits), n_local_bits, swaps)
        self.stats.seconds += time.perf_counter() - start
        self.stats.exchanges += 1
        self.stats.bytes_sent += moved
        new_layout = tuple(global_qubits[positions[local_qubits.index(q)]] if q in local_qubits else q for q in layout)
        new_global = list(global_qubits)
        for position, qubit in zip(positions, local_qubits):
            new_global[position] = qubit
        return state, new_layout, tuple(new_global)

    def _execute(self, state: torch.Tensor, n_global: int, n_local_bits: int, swaps: list[tuple[int, int]]) -> int:
        """Run the scheduler's swap batches on `state` in place; returns the bytes sent by this rank."""
        cusv = self.cusv
        complex_dtype = state.dtype if state.is_complex() else complex_of(state.dtype)
        data_type = (self.data_types.CUDA_C_64F if complex_dtype == torch.complex128 else self.data_types.CUDA_C_32F)
        element = torch.empty((), dtype=complex_dtype).element_size()
        stream = torch.cuda.current_stream(self.device)
        stream.synchronize()  # the worker runs on its own schedule; the state must be final
        worker, extra_size, min_transfer = cusv.sv_swap_worker_create(
            self.handle, self.communicator, state.data_ptr(), self.rank, self.event.ptr, data_type, stream.cuda_stream)
        extra = torch.empty(max(1, extra_size), dtype=torch.uint8, device=self.device)
        transfer_size = max(min_transfer, self.transfer_bytes)
        transfer = torch.empty(transfer_size, dtype=torch.uint8, device=self.device)
        try:
            cusv.sv_swap_worker_set_extra_workspace(self.handle, worker, extra.data_ptr(), extra_size)
            cusv.sv_swap_worker_set_transfer_workspace(self.handle, worker, transfer.data_ptr(), transfer_size)
            scheduler = self._scheduler(n_global, n_local_bits)
            batches = cusv.dist_index_bit_swap_scheduler_set_index_bit_swaps(
                self.handle, scheduler, swaps, len(swaps), [], [], 0)
            sent = run_swap_batches(cusv, self.handle, scheduler, worker, batches, self.rank) * element
            stream.synchronize()
        finally:
            cusv.sv_swap_worker_destroy(self.handle, worker)
        return sent

    def close(self) -> None:
        """Release the schedulers, communicator and handle (also done when the swapper is collected)."""
        if getattr(self, "handle", None) is None:
            return
        for scheduler in self._schedulers.values():
            self.cusv.dist_index_bit_swap_scheduler_destroy(self.handle, scheduler)
        self._schedulers.clear()
        self.cusv.communicator_destroy(self.handle, self.communicator)
        self.cusv.destroy(self.handle)
        self.handle = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass
