"""Expectation values and adjoint gradients through the C kernels, as a torch autograd Function.

States live in torch tensors shaped [chunks, 2**n, W]: W samples (lanes) per row, so each gate updates
whole SIMD vectors of samples; the batch is padded to a whole number of chunks with lanes whose results are
dropped. Rotation angles are a [rotations, padded batch] table of cos/sin(θ/2) (a weight's angle repeated
across lanes), so per-sample (feature) and shared (weight) angles take the same code path; the kernel
returns dL/dθ per rotation and sample, which it then sums into weights and scatters into features.
Everything that touches state-sized or per-rotation arrays runs in the kernel library, none of it in torch
ops: on a busy machine each multi-threaded torch op can cost a scheduler time slice.
"""

from __future__ import annotations

import ctypes
import math

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.sim.kernel.library import KernelLibrary
from hpcq.sim.kernel.program import KernelProgram, compile_program
from hpcq.sim.observables import Pauli

#: bytes of one tile (2**k rows of a chunk): about half of a typical 512 KiB-1 MiB L2
DEFAULT_TILE_BYTES = 256 * 2**10
#: vectors per row (W = vectors × SIMD lanes samples) the kernels are built for
VECTORS_PER_ROW = (4, 2, 1)
#: below this many amplitude updates (2**n × padded batch × operations) a call runs on one thread: the work
#: is shorter than what waking and joining a second thread costs on a busy machine
PARALLEL_MIN_UPDATES = 2**24
_PRECISION = {torch.float32: "f32", torch.float64: "f64"}


def _pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    """The data pointer of a tensor the kernels read as whole SIMD vectors (torch aligns CPU storage to 64)."""
    if tensor.data_ptr() % 64 or not tensor.is_contiguous():
        raise RuntimeError("the compiled kernels need contiguous, 64-byte aligned tensors")
    return ctypes.c_void_p(tensor.data_ptr())


def _address(tensor: torch.Tensor | None) -> ctypes.c_void_p:
    """A contiguous tensor's data pointer for arrays the kernels read element by element (None → NULL)."""
    if tensor is None:
        return ctypes.c_void_p(None)
    if not tensor.is_contiguous():
        raise RuntimeError("the compiled kernels need contiguous tensors")
    return ctypes.c_void_p(tensor.data_ptr())


def observable_table(paulis: list[Pauli]) -> torch.Tensor:
    """[n_obs, 3] int64: flipped-bit mask (X|Y), sign mask (Z|Y) and the real phase i^#Y (0 when #Y is odd:
    such an observable has <P> = 0 on every real state)."""
    rows = []
    for pauli in paulis:
        n_y = len(pauli.y)
        phase = 0 if n_y % 2 else (-1) ** (n_y // 2)
        rows.append([sum(1 << q for q in pauli.flips), sum(1 << q for q in pauli.signs), phase])
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)


class _Run:
    """One call's plan and buffers: the padded batch, the angle tables and, after forward, the final states."""

    def __init__(self, library: KernelLibrary, program: KernelProgram, paulis: list[Pauli], batch: int,
                 dtype: torch.dtype, vectors_per_row: int):
        self.library, self.program = library, program
        self.batch, self.dtype, self.vectors_per_row = batch, dtype, vectors_per_row
        self.lanes = vectors_per_row * library.vector_bytes // (torch.finfo(dtype).bits // 8)
        self.chunks = math.ceil(batch / self.lanes)
        self.padded = self.chunks * self.lanes
        self.n = program.n_qubits
        self.observables = observable_table(paulis)
        updates = 2**self.n * self.padded * max(1, len(program.ops))
        self.threads = torch.get_num_threads() if updates >= PARALLEL_MIN_UPDATES else 1
        self._tables = [torch.from_numpy(t) for t in (program.stages, program.stage_qubits, program.ops)]
        self.angle_kinds = torch.from_numpy(program.angle_kinds)
        self._angle_values = torch.from_numpy(program.angle_values).to(dtype)
        self.final: torch.Tensor | None = None

    def _function(self, name: str):
        return self.library.function(name, _PRECISION[self.dtype], self.vectors_per_row)

    def _call(self, direction: str, *arguments) -> None:
        tables = (ctypes.c_void_p(t.data_ptr()) for t in self._tables)
        status = self._function(direction)(self.n, self.program.n_stages, *tables, *arguments, self.threads)
        if status != 0:
            raise MemoryError(f"the compiled statevector kernel could not allocate its {direction} tile buffers")

    def angle_tables(self, weights: torch.Tensor, features: torch.Tensor | None) -> None:
        """cos(θ/2) and sin(θ/2) for every rotation and (padded) sample: [rotations, padded batch]."""
        rotations = len(self.program.rotations)
        self.cos = torch.empty(rotations, self.padded, dtype=self.dtype)
        self.sin = torch.empty(rotations, self.padded, dtype=self.dtype)
        weights = weights.contiguous()
        features = None if features is None else features.contiguous()
        self._function("angles")(rotations, _address(self.angle_kinds), _address(self._angle_values),
                                 _address(weights), _address(features),
                                 0 if features is None else features.shape[1], self.batch, self.padded,
                                 _pointer(self.cos), _pointer(self.sin))

    def forward(self, psi0: torch.Tensor | None, keep: bool) -> torch.Tensor:
        """[batch, n_observables]; with `keep`, the final states stay for `backward`."""
        state = torch.empty(self.chunks, 2**self.n, self.lanes, dtype=self.dtype)
        values = torch.zeros(len(self.observables), self.padded, dtype=torch.float64)
        psi0 = None if psi0 is None else psi0.contiguous()
        self._call("forward", _address(psi0), self.batch, _pointer(state), self.chunks, _pointer(self.cos),
                   _pointer(self.sin), len(self.observables), _pointer(self.observables), _pointer(values))
        if keep:
            self.final = state
        return values[:, : self.batch].transpose(0, 1).to(self.dtype)

    def backward(self, grad_out: torch.Tensor, want_psi0: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(dL/dθ [rotations, padded batch] in float64, dL/dψ0 [batch, 2**n] or None); consumes the kept final
        state."""
        psi, self.final = self.final, None
        lam = torch.empty_like(psi)
        grad_psi0 = torch.empty(self.batch, 2**self.n, dtype=self.dtype) if want_psi0 else None
        # λ = Σ_i g_i ∂<P_i>/∂ψ = Σ_i 2 g_i P_i ψ; the kernel applies the sign pattern of P_i
        seed = torch.zeros(len(self.observables), self.padded, dtype=self.dtype)
        seed[:, : self.batch] = (2 * grad_out * self.observables[:, 2].to(self.dtype)).transpose(0, 1)
        grad = torch.zeros(len(self.program.rotations), self.padded, dtype=torch.float64)
        self._call("backward", _pointer(psi), _pointer(lam), _address(grad_psi0), self.batch, self.chunks,
                   _pointer(self.cos), _pointer(self.sin), len(self.observables), _pointer(self.observables),
                   _pointer(seed), len(self.program.rotations), _pointer(grad))
        return grad, grad_psi0


def _scatter_angle_gradients(run: _Run, grad: torch.Tensor, weights: torch.Tensor,
                             features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """dL/dθ per rotation and sample → dL/dweights (summed over samples) and dL/dfeatures (per sample).

    Done by the kernel library rather than torch indexing: on a busy machine, every multi-threaded torch op
    can cost a scheduler time slice, far more than this loop over a few thousand numbers."""
    grad_weights = torch.zeros(weights.shape[0], dtype=torch.float64)
    grad_features = None if features is None else torch.zeros(features.shape, dtype=torch.float64)
    run.library.cdll.hpcq_scatter_gradients(len(run.program.rotations), _address(run.angle_kinds), _pointer(grad),
                                            run.batch, run.padded, _address(grad_weights),
                                            _address(grad_features), 0 if features is None else features.shape[1])
    return grad_weights.to(weights.dtype), None if features is None else grad_features.to(features.dtype)


class _CompiledExpectation(torch.autograd.Function):
    """Forward through the kernels; backward by the kernels' adjoint pass."""

    @staticmethod
    def forward(ctx, run: _Run, weights, features, psi0):
        run.angle_tables(weights.detach(), None if features is None else features.detach())
        keep = any(ctx.needs_input_grad[1:])
        out = run.forward(None if psi0 is None else psi0.detach(), keep)
        ctx.run = run
        ctx.save_for_backward(weights, features)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        weights, features = ctx.saved_tensors
        grad, grad_psi0 = ctx.run.backward(grad_out.to(ctx.run.dtype).contiguous(), ctx.needs_input_grad[3])
        grad_weights, grad_features = _scatter_angle_gradients(ctx.run, grad, weights, features)
        ctx.run = None
        return None, grad_weights, grad_features, grad_psi0


def choose_vectors_per_row(batch: int, lanes_per_vector: int, threads: int) -> int:
    """The widest rows that still give every thread a chunk of its own (threads then never wait on each
    other) and are no wider than the batch needs (padded lanes cost time and a state's worth of memory each);
    one vector when the batch is too small for that, which wastes the fewest padded lanes."""
    vectors_needed = math.ceil(batch / lanes_per_vector)
    for vectors in VECTORS_PER_ROW:
        if vectors <= vectors_needed and math.ceil(batch / (vectors * lanes_per_vector)) >= threads:
            return vectors
    return 1


def compiled_expectation(circuit: Circuit, weights: torch.Tensor, features: torch.Tensor | None,
                         paulis: list[Pauli], psi0: torch.Tensor | None, library: KernelLibrary, *,
                         tile_bytes: int = DEFAULT_TILE_BYTES, vectors: int | None = None) -> torch.Tensor:
    """[batch, n_observables] for a real circuit on CPU tensors, differentiable in weights, features, psi0.

    `vectors` (1, 2 or 4 SIMD vectors of samples per row) is chosen from the batch and thread count unless
    given; `tile_bytes` sets the cache block, hence how many qubits each stage keeps local.
    """
    batch = 1 if features is None else features.shape[0]
    lanes_per_vector = library.vector_bytes // weights.element_size()
    vectors_per_row = vectors or choose_vectors_per_row(batch, lanes_per_vector, torch.get_num_threads())
    lanes = vectors_per_row * lanes_per_vector
    local_qubits = max(1, int(math.log2(max(1, tile_bytes // (lanes * weights.element_size())))))
    program = compile_program(circuit, local_qubits)
    run = _Run(library, program, paulis, batch, weights.dtype, vectors_per_row)
    return _CompiledExpectation.apply(run, weights, features, psi0)
