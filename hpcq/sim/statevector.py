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

import math
import os
from dataclasses import dataclass

import torch

from hpcq.circuits.circuit import Circuit, CircuitCache
from hpcq.errors import ConfigError
from hpcq.sim.fusion import Block, fuse
from hpcq.sim.kernel import DEFAULT_TILE_BYTES, KernelLibrary, compiled_expectation, load_library, unsupported_gates
from hpcq.sim.layout import (
    Layout, apply_matrix, canonical_layout, leading_layout, outer_on_leading, permute_state, reorder_matrix,
)
from hpcq.sim.measure import adjoint_seed, expectations
from hpcq.sim.memory import check_statevector_fits
from hpcq.sim.observables import Pauli, parse_observables

#: bytes of one chunk's state: small enough that ψ, λ and temporaries stay in the last-level cache
DEFAULT_CHUNK_BYTES = 8 * 2**20
#: values of expectation(kernel=...)
KERNELS = ("auto", "compiled", "torch")
#: set (to anything) to check inputs on GPUs too, where the check waits for the device on every call
DEBUG_ENV = "HPCQ_DEBUG"


@dataclass
class CompiledCircuit:
    """A circuit fused into blocks, with the index tensors that gather each block's angles."""

    circuit: Circuit
    blocks: list[Block]
    gate_count: int

    @property
    def is_real(self) -> bool:
        return all(block.is_real for block in self.blocks)


_COMPILED: CircuitCache[CompiledCircuit] = CircuitCache()


def compile_circuit(circuit: Circuit, max_qubits: int = 5, max_rotations: int = 6) -> CompiledCircuit:
    """Fuse once per circuit (and fusion setting); recompiled automatically if the circuit changed."""
    return _COMPILED.get(circuit, (max_qubits, max_rotations), lambda: CompiledCircuit(
        circuit, fuse(circuit, min(max_qubits, circuit.n_qubits), max_rotations), len(circuit.gates)))


def _angle_table(block: Block, weights: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """[b, m, 2] table of (cos θ/2, sin θ/2) for the block's rotations (b = batch if per-sample else 1)."""
    columns = []
    batch = features.shape[0] if (block.per_sample and features is not None) else 1
    for gate in block.rotations:
        if gate.source == "weight":
            angle = weights[gate.index].expand(batch)
        elif gate.source == "feature":
            angle = features[:, gate.index]
        else:
            angle = torch.full((batch,), gate.value, dtype=weights.dtype, device=weights.device)
        columns.append(angle)
    half = torch.stack(columns, dim=1) / 2
    return torch.stack([torch.cos(half), torch.sin(half)], dim=-1)


_SIGN_PATTERNS: dict[tuple[int, str], torch.Tensor] = {}


def _sign_patterns(m: int, device: torch.device) -> torch.Tensor:
    """[2**m, m] bits: row t holds bit j of t (rotation j took its sin term)."""
    key = (m, str(device))
    if key not in _SIGN_PATTERNS:
        t = torch.arange(2**m, device=device)
        _SIGN_PATTERNS[key] = (t[:, None] >> torch.arange(m, device=device)[None, :]) & 1
    return _SIGN_PATTERNS[key]


def block_matrices(
    compiled: CompiledCircuit, weights: torch.Tensor, features: torch.Tensor | None, complex_path: bool
) -> list[torch.Tensor]:
    """Each block's [1 or batch, 2**k, 2**k] matrix as a differentiable function of weights and features."""
    matrix_dtype = _complex_of(weights.dtype) if complex_path else weights.dtype
    matrices = []
    for block in compiled.blocks:
        terms = _terms_tensor(block, matrix_dtype, weights.device)
        if not block.rotations:
            matrices.append(terms)
            continue
        table = _angle_table(block, weights, features)
        m = len(block.rotations)
        picks = table[:, torch.arange(m, device=weights.device), _sign_patterns(m, weights.device)]
        coefficients = picks.prod(dim=-1).to(matrix_dtype)  # [b, 2**m]
        matrices.append(torch.einsum("bt,tij->bij", coefficients, terms))
    return matrices


def _terms_tensor(block: Block, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The block's constant term matrices as a tensor, converted once per dtype and device."""
    key = (dtype, str(device))
    tensor = block.tensors.get(key)
    if tensor is None:
        tensor = torch.as_tensor(block.terms, dtype=dtype, device=device)
        block.tensors[key] = tensor
    return tensor


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex64 if dtype == torch.float32 else torch.complex128


def _block_msb_first(block: Block) -> Layout:
    return tuple(reversed(block.qubits))


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
        target = leading_layout(layout, _block_msb_first(block))
        state = permute_state(state, layout, target)
        k = len(block.qubits)
        local = reorder_matrix(matrix, _block_msb_first(block), target[:k])
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
                target = leading_layout(layout, _block_msb_first(block))
                psi, lam = permute_state(psi, layout, target), permute_state(lam, layout, target)
                layout = target
                psi, _ = self._apply(psi, layout, block, chunk_matrix, inverse=True)
                if grads[b] is not None:
                    k = len(block.qubits)
                    local_grad = outer_on_leading(lam, psi, 2**k, per_sample=matrix.shape[0] > 1)
                    grad = reorder_matrix(local_grad, layout[:k], _block_msb_first(block))
                    if matrix.shape[0] > 1:
                        grads[b][rows] += grad
                    else:
                        grads[b] += grad
                lam, _ = self._apply(lam, layout, block, chunk_matrix, inverse=True)
            if want_psi0:
                grads_psi0.append(permute_state(lam, layout, canonical_layout(self.n)).transpose(0, 1))
        grad_psi0 = torch.cat(grads_psi0) if want_psi0 else None
        return grad_psi0, grads


class _AdjointExpectation(torch.autograd.Function):
    """Expectation values whose backward is the adjoint method rather than stored intermediates."""

    @staticmethod
    def forward(ctx, engine: _Engine, batch: int, psi0, *matrices):
        with torch.no_grad():
            out, finals = engine.forward(psi0, matrices, batch)
        ctx.engine = engine
        ctx.finals = finals
        ctx.want_psi0 = psi0 is not None and psi0.requires_grad
        ctx.save_for_backward(*matrices)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        matrices = ctx.saved_tensors
        with torch.no_grad():
            grad_psi0, grads = ctx.engine.backward(ctx.finals, matrices, grad_out, ctx.want_psi0)
        ctx.finals = None
        return (None, None, grad_psi0, *grads)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """ConfigError naming `tensor` when it holds NaN or ±Inf, which would come out as NaN expectations.

    Always on for CPU tensors, where it costs one sum (a few µs; a call takes 0.5 ms or more). On a GPU, reading
    the answer back waits for the device and stalls the queue on every call, so there it runs only when the
    HPCQ_DEBUG environment variable is set."""
    if tensor.device.type != "cpu" and not os.environ.get(DEBUG_ENV):
        return
    values = tensor.detach()
    # NaN and ±Inf make the sum non-finite; only then (finite values can also overflow it) look element-wise.
    if math.isfinite(values.sum()):
        return
    bad = ~torch.isfinite(values)
    if bad.any():
        first = [int(i) for i in bad.nonzero()[0]]
        raise ConfigError(
            f"{name} holds {int(bad.sum())} NaN/Inf value(s) (the first at {first}), which would give NaN "
            f"expectations; find where they come from (the input data, or a diverged training step: lower train.lr)"
        )


def _validate_inputs(circuit: Circuit, weights, features) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    if not isinstance(weights, torch.Tensor):
        raise ConfigError(f"weights must be a torch tensor of shape [{circuit.n_weights}], got {type(weights).__name__}")
    if weights.dim() != 1 or weights.shape[0] != circuit.n_weights:
        raise ConfigError(
            f"weights has shape {tuple(weights.shape)} but the circuit uses {circuit.n_weights} weights; "
            f"pass a 1-D tensor of shape [{circuit.n_weights}]"
        )
    if weights.dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"weights dtype {weights.dtype} is not supported; use torch.float32 or torch.float64")
    check_finite("weights", weights)
    if circuit.n_features == 0 and features is None:
        return weights, None, 1
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[1] != circuit.n_features:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ConfigError(
            f"features has shape {shape} but the circuit reads {circuit.n_features} features per sample; "
            f"pass a 2-D tensor of shape [batch, {circuit.n_features}]"
        )
    if features.shape[0] < 1:
        raise ConfigError("features has an empty batch; pass at least one sample")
    check_finite("features", features)
    return weights, features.to(weights.dtype), features.shape[0]


def amplitude_state(features: torch.Tensor, n_amplitudes: int, n_qubits: int) -> torch.Tensor:
    """L2-normalised features zero-padded to 2**n_qubits amplitudes (an all-zero row stays all zero)."""
    vector = features[:, :n_amplitudes]
    norm = torch.sqrt((vector * vector).sum(dim=1, keepdim=True) + torch.finfo(vector.dtype).tiny)
    return torch.nn.functional.pad(vector / norm, (0, 2**n_qubits - n_amplitudes))


def _compiled_kernels(kernel: str, circuit: Circuit, device: torch.device) -> KernelLibrary | None:
    """The compiled kernels when `kernel` asks for them and they can run this circuit here, else None."""
    if kernel not in KERNELS:
        raise ConfigError(f"kernel={kernel!r} is not one of {', '.join(KERNELS)}")
    if kernel == "torch":
        return None
    complex_gates = unsupported_gates(circuit)
    reason = None
    if device.type != "cpu":
        reason = f"they run on CPU tensors, and the weights are on {device}"
    elif complex_gates:
        reason = f"they run real circuits only, and gates {', '.join(complex_gates)} are complex"
    if reason is None:
        return load_library()  # None, with one warning per process, when they cannot be built
    if kernel == "compiled":
        raise ConfigError(f"kernel='compiled' cannot be used: {reason}; use kernel='auto' or kernel='torch'")
    return None


def expectation(
    circuit: Circuit,
    weights: torch.Tensor,
    features: torch.Tensor | None,
    observables="Z",
    *,
    kernel: str = "auto",
    max_fused_qubits: int = 5,
    max_fused_rotations: int = 6,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    tile_bytes: int = DEFAULT_TILE_BYTES,
) -> torch.Tensor:
    """<O_i> for each sample: [batch, n_observables], differentiable in weights and features.

    `kernel`: "auto" runs real circuits on CPU through the compiled kernels (when a C compiler is available)
    and everything else through PyTorch; "compiled" or "torch" force one. `max_fused_*` and `chunk_bytes`
    tune the PyTorch path, `tile_bytes` (the cache block) the compiled one.
    """
    weights, features, batch = _validate_inputs(circuit, weights, features)
    paulis = parse_observables(observables, circuit.n_qubits)
    gradient = torch.is_grad_enabled() and (weights.requires_grad or (features is not None and features.requires_grad))
    library = _compiled_kernels(kernel, circuit, weights.device)
    if library is not None:
        check_statevector_fits(circuit.n_qubits, batch, weights.dtype, False, weights.device, gradient)
        psi0 = None
        if circuit.amplitude_features is not None:
            psi0 = amplitude_state(features, circuit.amplitude_features, circuit.n_qubits)
        return compiled_expectation(circuit, weights, features, paulis, psi0, library, tile_bytes=tile_bytes)
    compiled = compile_circuit(circuit, max_fused_qubits, max_fused_rotations)
    complex_path = not compiled.is_real
    check_statevector_fits(circuit.n_qubits, batch, weights.dtype, complex_path, weights.device, gradient)
    state_dtype = _complex_of(weights.dtype) if complex_path else weights.dtype
    psi0 = None
    if circuit.amplitude_features is not None:
        psi0 = amplitude_state(features, circuit.amplitude_features, circuit.n_qubits).to(state_dtype)
    matrices = block_matrices(compiled, weights, features, complex_path)
    amplitude_bytes = torch.tensor([], dtype=state_dtype).element_size()
    chunk = max(1, min(batch, chunk_bytes // (amplitude_bytes * 2**circuit.n_qubits)))
    engine = _Engine(compiled, paulis, complex_path, chunk, state_dtype, weights.device)
    return _AdjointExpectation.apply(engine, batch, psi0, *matrices)
