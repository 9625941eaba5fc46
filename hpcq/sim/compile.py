"""The compiled circuit every state-vector backend runs: the circuit fused into blocks, and the blocks'
matrices for a call's weights and features.

As in qsim: circuit → fuser (`hpcq.sim.fusion`, once per circuit version and width) → one compiled form →
simulators. The statevector backend's torch engine, the distributed backend (its rank slices, and its
in-place compiled kernels through `hpcq.sim.kernel.dense`) and the custatevec backend all run the same
`CompiledCircuit` and `block_matrices`. The batched compiled kernels are the one path that does not: they
run the circuit gate by gate with samples in SIMD lanes, in cache-blocked stages of as many qubits as a
cache tile holds (`hpcq.sim.kernel.program`), where a dense block over a stage's k qubits would cost 2^k
multiply-adds per amplitude against about two per gate. The fusion widths are named here, in one place;
they differ by what applies the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from hpcq.circuits.circuit import Circuit, CircuitCache
from hpcq.sim.fusion import Block, fuse
from hpcq.sim.precision import complex_of

#: widest block when torch or cuStateVec applies the blocks (statevector and custatevec backends, the
#: distributed backend off its in-place kernels): torch pays a layout copy per block and gains from fewer,
#: wider ones
FUSED_QUBITS = 5
#: most rotations per block: its matrix is a sum of 2^m constant terms, so at m = 6 rebuilding every block
#: for new angles stays one small contraction (64 terms of at most 32 x 32)
FUSED_ROTATIONS = 6
#: widest block when the distributed backend's compiled in-place kernels apply every block (one sample, real
#: circuit, CPU): a k-qubit block costs 2^k multiply-adds per amplitude and is compute-bound from k = 4 on a
#: 2-core AVX2 node; the 26-qubit forward took 2.1 s at 3, 2.3 s at 4, 3.1 s at 5 qubits
#: (`hpcq bench scale --fused-qubits`)
COMPILED_FUSED_QUBITS = 3


@dataclass
class CompiledCircuit:
    """A circuit fused into blocks, in application order."""

    circuit: Circuit
    blocks: list[Block]

    @property
    def is_real(self) -> bool:
        return all(block.is_real for block in self.blocks)

    @cached_property
    def _angle_sources(self) -> tuple[torch.Tensor, list[float]]:
        """Where each rotation row's angle comes from, as an index into [weights, features of one sample,
        constants] (the constants themselves listed second)."""
        n_weights, n_features = self.circuit.n_weights, self.circuit.n_features
        index, constants = [], []
        for block in self.blocks:
            for gate in block.rotations:
                if gate.source == "weight":
                    index.append(gate.index)
                elif gate.source == "feature":
                    index.append(n_weights + gate.index)
                else:
                    index.append(n_weights + n_features + len(constants))
                    constants.append(gate.value)
        return torch.tensor(index, dtype=torch.int64), constants


_COMPILED: CircuitCache[CompiledCircuit] = CircuitCache()


def compile_circuit(circuit: Circuit, max_qubits: int = FUSED_QUBITS,
                    max_rotations: int = FUSED_ROTATIONS) -> CompiledCircuit:
    """Fuse once per circuit (and fusion setting); recompiled automatically if the circuit changed."""
    return _COMPILED.get(circuit, (max_qubits, max_rotations), lambda: CompiledCircuit(
        circuit, fuse(circuit, min(max_qubits, circuit.n_qubits), max_rotations)))


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
    matrix_dtype = complex_of(weights.dtype) if complex_path else weights.dtype
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


def rotation_offsets(blocks: list[Block]) -> list[int]:
    """Where each block's rotations start in `rotation_angles`: block b's rotation j is at offsets[b] + j."""
    offsets, row = [], 0
    for block in blocks:
        offsets.append(row)
        row += len(block.rotations)
    return offsets


def rotation_angles(compiled: CompiledCircuit, weights: torch.Tensor,
                    features: torch.Tensor | None) -> torch.Tensor:
    """Every block's rotation angles in block order (rows as `rotation_offsets` says), as a
    differentiable function of weights and of the first sample's features: what a gate-by-gate adjoint of
    blocks shared by the whole batch reads (a block with feature angles is shared only when the batch is
    one sample)."""
    index, constants = compiled._angle_sources
    sample = weights.new_zeros(compiled.circuit.n_features) if features is None else features[0]
    pool = torch.cat([weights, sample, weights.new_tensor(constants)])
    return pool[index.to(weights.device)]


def _terms_tensor(block: Block, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The block's constant term matrices as a tensor, converted once per dtype and device."""
    key = (dtype, str(device))
    tensor = block.tensors.get(key)
    if tensor is None:
        tensor = torch.as_tensor(block.terms, dtype=dtype, device=device)
        block.tensors[key] = tensor
    return tensor
