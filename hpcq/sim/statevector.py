"""The `statevector` backend: batched, fused, adjoint-differentiated state vectors in PyTorch.

Forward: fused block matrices are built from the angles (one small contraction per block, tracked by
autograd), then applied to a batch of states chunk by chunk so a chunk's working set stays in cache.
Backward (adjoint method): starting from the final state ψ and the seed λ = 2 Σ g_i O_i ψ, each block is
un-applied to ψ and λ, and dL/dU = λ ⊗ ψ̄ is one more matmul; autograd then carries dL/dU back to the angles.
Memory: a few state vectors per chunk, whatever the depth; time: about 3-4 forward passes.

Real circuits (gates ry, cnot, cz, x, z, h: the paper's ansatz) on CPU tensors run instead through compiled
C kernels (`hpcq.sim.kernel`): gate by gate on SIMD vectors of samples, cache-blocked, with the same adjoint
method; `kernel="torch"` forces this module's PyTorch path, `kernel="compiled"` insists on the kernels.
"""

from __future__ import annotations

import torch

from hpcq.circuits.circuit import Circuit
from hpcq.sim.adjoint import AdjointExpectation
from hpcq.sim.compile import FUSED_QUBITS, FUSED_ROTATIONS, CompiledCircuit, block_matrices, compile_circuit
from hpcq.sim.inputs import amplitude_state, validate_inputs, wants_gradient
from hpcq.sim.kernel import DEFAULT_TILE_BYTES, compiled_expectation
from hpcq.sim.kernel.choice import compiled_kernels
from hpcq.sim.layout import (
    apply_matrix, canonical_layout, leading_layout, outer_on_leading, permute_state, reorder_matrix,
)
from hpcq.sim.measure import adjoint_seed, expectations
from hpcq.sim.memory import check_statevector_fits
from hpcq.sim.observables import Pauli, parse_observables
from hpcq.sim.precision import complex_of

#: bytes of one chunk's state: small enough that ψ, λ and temporaries stay in the last-level cache
DEFAULT_CHUNK_BYTES = 8 * 2**20


class _Engine:
    """Runs fused blocks over chunks of the batch, keeping what the backward pass needs."""

    def __init__(self, compiled: CompiledCircuit, paulis: list[Pauli], complex_path: bool, chunk: int,
                 state_dtype: torch.dtype, device: torch.device):
        self.compiled = compiled
        self.paulis = paulis
        self.complex_path = complex_path
        self.chunk = chunk
        self.n = compiled.circuit.n_qubits
        self.state_dtype = state_dtype
        self.device = device

    def initial_state(self, psi0: torch.Tensor | None, rows: slice) -> torch.Tensor:
        """A [2**n, chunk] state: the given amplitudes, or |0...0>."""
        if psi0 is not None:
            return psi0[rows].transpose(0, 1).contiguous()
        state = torch.zeros(2**self.n, rows.stop - rows.start, dtype=self.state_dtype, device=self.device)
        state[0] = 1
        return state

    def forward(self, psi0, matrices, batch):
        outputs, finals = [], []
        layout = canonical_layout(self.n)
        for start in range(0, batch, self.chunk):
            rows = slice(start, min(start + self.chunk, batch))
            state = self.initial_state(psi0, rows)
            layout = canonical_layout(self.n)
            for block, matrix in zip(self.compiled.blocks, matrices):
                state, layout = self._apply(state, layout, block, matrix[rows] if matrix.shape[0] > 1 else matrix)
            outputs.append(expectations(state, layout, self.paulis, self.complex_path))
            finals.append(state)
        self.final_layout = layout
        return torch.cat(outputs), finals

    def _apply(self, state, layout, block, matrix, inverse=False):
        target = leading_layout(layout, block.msb_first)
        state = permute_state(state, layout, target)
        k = len(block.qubits)
        local = reorder_matrix(matrix, block.msb_first, target[:k])
        if inverse:
            local = local.conj().transpose(1, 2) if self.complex_path else local.transpose(1, 2)
        return apply_matrix(state, local), target

    def backward(self, finals, matrices, grad_out, want_psi0):
        grads = [torch.zeros_like(m) if m.requires_grad else None for m in matrices]
        grads_psi0 = []
        blocks = self.compiled.blocks
        for chunk_index, final in enumerate(finals):
            start = chunk_index * self.chunk
            rows = slice(start, start + final.shape[-1])
            psi, layout = final, self.final_layout
            lam = adjoint_seed(psi, layout, self.paulis, grad_out[rows], self.complex_path)
            for b in range(len(blocks) - 1, -1, -1):
                block, matrix = blocks[b], matrices[b]
                chunk_matrix = matrix[rows] if matrix.shape[0] > 1 else matrix
                target = leading_layout(layout, block.msb_first)
                psi, lam = permute_state(psi, layout, target), permute_state(lam, layout, target)
                layout = target
                psi, _ = self._apply(psi, layout, block, chunk_matrix, inverse=True)
                if grads[b] is not None:
                    k = len(block.qubits)
                    local_grad = outer_on_leading(lam, psi, 2**k, per_sample=matrix.shape[0] > 1)
                    grad = reorder_matrix(local_grad, layout[:k], block.msb_first)
                    if matrix.shape[0] > 1:
                        grads[b][rows] += grad
                    else:
                        grads[b] += grad
                lam, _ = self._apply(lam, layout, block, chunk_matrix, inverse=True)
            if want_psi0:
                grads_psi0.append(permute_state(lam, layout, canonical_layout(self.n)).transpose(0, 1))
        grad_psi0 = torch.cat(grads_psi0) if want_psi0 else None
        return grad_psi0, grads


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables="Z",
    *,
    kernel: str = "auto",
    max_fused_qubits: int = FUSED_QUBITS,
    max_fused_rotations: int = FUSED_ROTATIONS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    tile_bytes: int = DEFAULT_TILE_BYTES,
) -> torch.Tensor:
    """<O_i> for each sample: [batch, n_observables], differentiable in weights and features.

    `kernel`: "auto" runs real circuits on CPU through the compiled kernels (when a C compiler is available)
    and everything else through PyTorch; "compiled" or "torch" force one. `max_fused_*` and `chunk_bytes`
    tune the PyTorch path, `tile_bytes` (the cache block) the compiled one.
    """
    weights, features, batch = validate_inputs(circuit, weights, features)
    paulis = parse_observables(observables, circuit.n_qubits)
    gradient = wants_gradient(weights, features)
    library = compiled_kernels(kernel, circuit, weights.device)
    if library is not None:
        check_statevector_fits(circuit.n_qubits, batch, weights.dtype, False, weights.device, gradient)
        psi0 = None
        if circuit.amplitude_features is not None:
            psi0 = amplitude_state(features, circuit.amplitude_features, circuit.n_qubits)
        return compiled_expectation(circuit, weights, features, paulis, psi0, library, tile_bytes=tile_bytes)
    compiled = compile_circuit(circuit, max_fused_qubits, max_fused_rotations)
    complex_path = not compiled.is_real
    check_statevector_fits(circuit.n_qubits, batch, weights.dtype, complex_path, weights.device, gradient)
    state_dtype = complex_of(weights.dtype) if complex_path else weights.dtype
    psi0 = None
    if circuit.amplitude_features is not None:
        psi0 = amplitude_state(features, circuit.amplitude_features, circuit.n_qubits).to(state_dtype)
    matrices = block_matrices(compiled, weights, features, complex_path)
    amplitude_bytes = torch.tensor([], dtype=state_dtype).element_size()
    chunk = max(1, min(batch, chunk_bytes // (amplitude_bytes * 2**circuit.n_qubits)))
    engine = _Engine(compiled, paulis, complex_path, chunk, state_dtype, weights.device)
    return AdjointExpectation.apply(engine, batch, psi0, *matrices)
