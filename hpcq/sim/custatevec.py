"""The `custatevec` backend: a batch of state vectors on one NVIDIA GPU, driven by cuStateVec.

The batch lives in one contiguous [batch, 2**n] complex buffer (each sample's state contiguous, stride
2**n), so each fused block is one `apply_matrix_batched` call for the whole batch: `BROADCAST` when the block
is the same for every sample (weights only), `MATRIX_INDEXED` with one matrix per sample when a feature angle
enters it. Expectation values come from `compute_expectation_batched` with each Pauli string as a dense
matrix on its support. Gradients use the adjoint method of the statevector backend (same engine interface
and autograd function): blocks are un-applied with the `adjoint` flag of `apply_matrix_batched`, the adjoint
seed λ = 2 Σ g_i O_i ψ and each block's dL/dU = Σ λ ψ† are formed with PyTorch on the same device memory.

API: `cuquantum.bindings.custatevec` and `cuquantum.cudaDataType` / `ComputeType` as in cuquantum-python
25.09 to 26.9 (the `gpu` extra). This module imports without CUDA or cuQuantum. Its calls' names, argument
lists and enums are checked on CPU against the installed bindings (tests/test_sim_custatevec.py); it has not
yet run on a GPU here (none was available), so treat its first GPU run as a test: `hpcq selftest --gpu`
compares it with the CPU statevector backend.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import torch

from hpcq.circuits.circuit import Circuit
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.sim.accelerator import accelerator_of
from hpcq.sim.adjoint import AdjointExpectation
from hpcq.sim.compile import FUSED_QUBITS, FUSED_ROTATIONS, block_matrices, compile_circuit
from hpcq.sim.fusion import Block
from hpcq.sim.inputs import amplitude_state, validate_inputs, wants_gradient
from hpcq.sim.layout import canonical_layout
from hpcq.sim.measure import adjoint_seed
from hpcq.sim.memory import check_statevector_fits
from hpcq.sim.observables import Pauli, parse_observables
from hpcq.sim.precision import complex_of

#: a Pauli string is handed to cuStateVec as a dense 2^k x 2^k matrix on its support; above this k, use
#: the statevector backend (which applies Pauli strings without forming matrices)
MAX_OBSERVABLE_QUBITS = 10
_PAULI = {"X": np.array([[0, 1], [1, 0]], dtype=complex), "Y": np.array([[0, -1j], [1j, 0]]),
          "Z": np.array([[1, 0], [0, -1]], dtype=complex)}
_HANDLES: dict[int, int] = {}


def _library():
    """(custatevec bindings, cudaDataType, ComputeType), or MissingDependencyError naming the gpu extra."""
    try:
        from cuquantum import ComputeType, cudaDataType
        from cuquantum.bindings import custatevec
    except ImportError as err:
        raise MissingDependencyError("cuquantum-python-cu12", "gpu", "the custatevec backend") from err
    return custatevec, cudaDataType, ComputeType


def _handle(cusv, device: torch.device) -> int:
    """One cuStateVec handle per device, bound to PyTorch's current stream there."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _HANDLES:
        with torch.cuda.device(index):
            _HANDLES[index] = cusv.create()
    cusv.set_stream(_HANDLES[index], torch.cuda.current_stream(index).cuda_stream)
    return _HANDLES[index]


def pauli_matrix(pauli: Pauli) -> tuple[np.ndarray, list[int]]:
    """The Pauli string as a dense matrix on its support and the basis bits (bit j of the index = qubit j)."""
    support = sorted(pauli.x | pauli.y | pauli.z)
    label = {q: "X" if q in pauli.x else "Y" if q in pauli.y else "Z" for q in support}
    matrix = reduce(np.kron, [_PAULI[label[q]] for q in reversed(support)], np.eye(1, dtype=complex))
    return np.ascontiguousarray(matrix), support


class CuStateVecEngine:
    """Forward and adjoint passes over a [batch, 2**n] complex buffer (the statevector engine's interface)."""

    def __init__(self, blocks: list[Block], paulis: list[Pauli], n_qubits: int, state_dtype: torch.dtype,
                 device: torch.device):
        self.cusv, data_type, compute_type = _library()
        double = state_dtype == torch.complex128
        self.data_type = data_type.CUDA_C_64F if double else data_type.CUDA_C_32F
        self.compute_type = compute_type.COMPUTE_64F if double else compute_type.COMPUTE_32F
        self.blocks, self.paulis, self.n = blocks, paulis, n_qubits
        self.state_dtype, self.device = state_dtype, device
        self.handle = _handle(self.cusv, device)

    def _workspace(self, size: int) -> tuple[torch.Tensor | None, int]:
        if size == 0:
            return None, 0
        buffer = torch.empty(size, dtype=torch.uint8, device=self.device)
        return buffer, buffer.data_ptr()

    def apply(self, state: torch.Tensor, block: Block, matrix: torch.Tensor, adjoint: bool) -> None:
        """Apply a block's [1 or batch, d, d] matrix (or its adjoint) to every state, in place."""
        cusv = self.cusv
        batch = state.shape[0]
        matrices = matrix.to(self.state_dtype).contiguous()
        per_sample = matrices.shape[0] > 1
        map_type = cusv.MatrixMapType.MATRIX_INDEXED if per_sample else cusv.MatrixMapType.BROADCAST
        indices = list(range(batch)) if per_sample else 0
        targets = list(block.qubits)  # targets[j] is bit j of the matrix index, as in the fused block
        common = (self.handle, self.data_type, self.n, batch, 2**self.n, map_type, indices, matrices.data_ptr(),
                  self.data_type, cusv.MatrixLayout.ROW, int(adjoint), matrices.shape[0])
        size = cusv.apply_matrix_batched_get_workspace_size(*common, len(targets), 0, self.compute_type)
        workspace, pointer = self._workspace(size)
        cusv.apply_matrix_batched(self.handle, state.data_ptr(), *common[1:], targets, len(targets), [], [], 0,
                                  self.compute_type, pointer, size)
        del workspace  # the stream orders its reuse after the kernel

    def measure(self, state: torch.Tensor) -> torch.Tensor:
        """[batch, n_observables] real expectation values via `compute_expectation_batched`."""
        cusv = self.cusv
        batch = state.shape[0]
        out = torch.empty(batch, len(self.paulis), dtype=state.real.dtype)
        for i, pauli in enumerate(self.paulis):
            dense, basis = pauli_matrix(pauli)
            if len(basis) > MAX_OBSERVABLE_QUBITS:
                raise ConfigError(f"observable {pauli.label(self.n)!r} acts on {len(basis)} qubits; the custatevec "
                                  f"backend measures at most {MAX_OBSERVABLE_QUBITS}, use backend='statevector'")
            matrix = torch.as_tensor(dense, dtype=self.state_dtype, device=self.device)
            values = np.empty(batch, dtype=np.complex128)
            size = cusv.compute_expectation_batched_get_workspace_size(
                self.handle, self.data_type, self.n, batch, 2**self.n, matrix.data_ptr(), self.data_type,
                cusv.MatrixLayout.ROW, 1, len(basis), self.compute_type)
            workspace, pointer = self._workspace(size)
            cusv.compute_expectation_batched(
                self.handle, state.data_ptr(), self.data_type, self.n, batch, 2**self.n, values.ctypes.data,
                matrix.data_ptr(), self.data_type, cusv.MatrixLayout.ROW, 1, basis, len(basis), self.compute_type,
                pointer, size)
            del workspace
            out[:, i] = torch.from_numpy(values.real)
        return out.to(self.device)

    def initial_state(self, psi0: torch.Tensor | None, batch: int) -> torch.Tensor:
        if psi0 is not None:
            return psi0.detach().to(self.state_dtype).contiguous().clone()
        state = torch.zeros(batch, 2**self.n, dtype=self.state_dtype, device=self.device)
        state[:, 0] = 1
        return state

    def forward(self, psi0, matrices, batch):
        state = self.initial_state(psi0, batch)
        for block, matrix in zip(self.blocks, matrices):
            self.apply(state, block, matrix, adjoint=False)
        return self.measure(state), [state]

    def _outer(self, lam: torch.Tensor, psi: torch.Tensor, block: Block, per_sample: bool) -> torch.Tensor:
        """dL/dU = Σ_rest λ[rest, i] conj(ψ[rest, j]) over the block's qubits (index bit j = block.qubits[j])."""
        batch, k = lam.shape[0], len(block.qubits)
        axes = [1 + self.n - 1 - q for q in reversed(block.qubits)]  # MSB of the block index first

        def columns(state: torch.Tensor) -> torch.Tensor:
            view = state.view(batch, *([2] * self.n)).movedim(axes, list(range(self.n + 1 - k, self.n + 1)))
            return view.reshape(batch, -1, 2**k)

        grad = torch.bmm(columns(lam).transpose(1, 2), columns(psi).conj())  # [batch, d, d]
        return grad if per_sample else grad.sum(0, keepdim=True)

    def backward(self, finals, matrices, grad_out, want_psi0):
        (psi,) = finals
        layout = canonical_layout(self.n)
        lam = adjoint_seed(psi.transpose(0, 1).contiguous(), layout, self.paulis, grad_out, True)
        lam = lam.transpose(0, 1).contiguous()
        grads = [torch.zeros_like(m) if m.requires_grad else None for m in matrices]
        for b in range(len(self.blocks) - 1, -1, -1):
            block, matrix = self.blocks[b], matrices[b]
            self.apply(psi, block, matrix, adjoint=True)
            if grads[b] is not None:
                grads[b] += self._outer(lam, psi, block, matrix.shape[0] > 1).to(grads[b].dtype)
            self.apply(lam, block, matrix, adjoint=True)
        return (lam if want_psi0 else None), grads


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables="Z",
    *,
    max_fused_qubits: int = FUSED_QUBITS,
    max_fused_rotations: int = FUSED_ROTATIONS,
) -> torch.Tensor:
    """<O_i> per sample, [batch, n_observables], on the GPU holding `weights`; differentiable (adjoint)."""
    _library()
    if weights.device.type != "cuda":
        raise ConfigError(f"the custatevec backend runs on an NVIDIA GPU but weights are on {weights.device}; "
                          "move weights and features to 'cuda' (or use backend='statevector' on CPU)")
    if accelerator_of(weights.device) == "amd":
        raise ConfigError("the custatevec backend runs on NVIDIA GPUs (cuQuantum) and this is a ROCm GPU; "
                          "use backend='statevector', which runs on it through torch")
    weights, features, batch = validate_inputs(circuit, weights, features)
    paulis = parse_observables(observables, circuit.n_qubits)
    compiled = compile_circuit(circuit, max_fused_qubits, max_fused_rotations)
    gradient = wants_gradient(weights, features)
    check_statevector_fits(circuit.n_qubits, batch, weights.dtype, True, weights.device, gradient, states_alive=3)
    state_dtype = complex_of(weights.dtype)
    psi0 = None
    if circuit.amplitude_features is not None:
        psi0 = amplitude_state(features, circuit.amplitude_features, circuit.n_qubits).to(state_dtype)
    matrices = block_matrices(compiled, weights, features, complex_path=True)
    engine = CuStateVecEngine(compiled.blocks, paulis, circuit.n_qubits, state_dtype, weights.device)
    return AdjointExpectation.apply(engine, batch, psi0, *matrices)


__all__ = ["expectation", "CuStateVecEngine", "pauli_matrix", "MAX_OBSERVABLE_QUBITS"]
