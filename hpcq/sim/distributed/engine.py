"""Forward and adjoint passes over a placement plan on one rank's slice of the state.

The engine has the interface of the statevector backend's engine (`forward(psi0, params, batch)` returns
the outputs and what backward needs; `backward(finals, params, grad_out, want_psi0)` returns the gradients
of the initial amplitudes and of every parameter), so the same autograd function drives both; its parameters
are every block matrix and then `rotation_angles`. Each rank applies the same fused blocks to its slice; sums
over amplitudes (expectation values, gradients) are local sums followed by one allreduce; an index-bit swap in
the forward pass is undone by the same swap in reverse on ψ and λ in the backward pass. With the compiled
kernels, the gates of consecutive shared real blocks are un-applied from ψ and λ in place, gate by gate, in
stages of one pass over both states (`unapply_gates`), whatever index bits their qubits occupy, and each
rotation's dL/dθ is reduced in the same pass; other blocks are moved to the leading axes and un-applied by
torch matmuls, which give dL/dU.
"""

from __future__ import annotations

import torch

from hpcq.circuits.circuit import Gate
from hpcq.sim.compile import rotation_offsets
from hpcq.sim.distributed.local import SliceApplier
from hpcq.sim.distributed.placement import Apply, Exchange, PlacementPlan
from hpcq.sim.fusion import Block
from hpcq.sim.gates import FIXED_GATES
from hpcq.sim.kernel import KernelLibrary
from hpcq.sim.kernel.dense import (
    GATE_CNOT, GATE_CZ, GATE_MATRIX, GATE_RY, GATE_RY_CNOT, dense_applies, dense_positions, plan_gate_stages,
    unapply_gates,
)
from hpcq.sim.layout import (
    Layout, apply_matrix, canonical_layout, leading_layout, outer_on_leading, permute_state, reorder_matrix,
)
from hpcq.sim.measure import adjoint_seed, expectations
from hpcq.sim.memory import zero_state
from hpcq.sim.observables import Pauli


def apply_block(state: torch.Tensor, layout: Layout, block: Block, matrix: torch.Tensor, complex_path: bool,
                inverse: bool = False) -> tuple[torch.Tensor, Layout]:
    """Apply a block's [1 or batch, d, d] matrix (or its inverse) to a [2**n_local, batch] slice."""
    target = leading_layout(layout, block.msb_first)
    state = permute_state(state, layout, target)
    local = reorder_matrix(matrix, block.msb_first, target[:len(block.qubits)])
    if inverse:
        local = local.conj().transpose(1, 2) if complex_path else local.transpose(1, 2)
    return apply_matrix(state, local), target


class Collectives:
    """Sums and gathers across the ranks of `comm` (small tensors: outputs, gradients)."""

    def __init__(self, comm):
        self.comm = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.rank = 0 if comm is None else comm.Get_rank()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.size == 1:
            return tensor
        from mpi4py import MPI

        host = tensor.detach().to("cpu", copy=True).contiguous()
        self.comm.Allreduce(MPI.IN_PLACE, host.numpy(), op=MPI.SUM)
        return host.to(tensor.device)

    def gather_columns(self, tensor: torch.Tensor) -> torch.Tensor:
        """[batch, m] on every rank → [batch, size·m], rank order."""
        if self.size == 1:
            return tensor
        host = tensor.detach().to("cpu").contiguous()
        gathered = torch.empty((self.size, *host.shape), dtype=host.dtype)
        self.comm.Allgather(host.numpy(), gathered.numpy())
        return gathered.permute(1, 0, 2).reshape(host.shape[0], -1).to(tensor.device)


#: the 2x2 matrices of the fixed one-qubit gates the compiled adjoint takes, row-major
_FIXED_MATRICES = {name: tuple(float(v) for v in FIXED_GATES[name].real.reshape(-1))
                   for name in ("h", "x", "z")}
_NO_MATRIX = (0.0, 0.0, 0.0, 0.0)


class _GateStages:
    """Gates waiting to be un-applied by the compiled gate-by-gate adjoint (consecutive compiled blocks', in
    reverse), and the dL/dθ it returned, summed per `rotation_angles` row."""

    def __init__(self, angles: torch.Tensor):
        half = angles.detach().to("cpu", torch.float64) / 2
        self.cos, self.sin = torch.cos(half).tolist(), torch.sin(half).tolist()
        self.grad = torch.zeros(len(self.cos), dtype=torch.float64)
        self.pending: list[tuple[Gate, tuple[int, ...], int | None]] = []
        self.ops: list[tuple[int, int, int, tuple[float, ...]]] = []
        self.rows: list[int | None] = []

    def unapply(self, library: KernelLibrary, psi: torch.Tensor, lam: torch.Tensor) -> None:
        """Un-apply every pending gate from ψ and λ in place, in the stages of `plan_gate_stages` (one pass
        over both states each)."""
        plan = plan_gate_stages(tuple(positions for _, positions, _ in self.pending),
                                psi.numel().bit_length() - 1, psi.dtype)
        for stage in plan:
            for index in stage:
                self._add(*self.pending[index])
            grads = unapply_gates(library, psi, lam, self.ops).tolist()
            for row, grad in zip(self.rows, grads):
                if row is not None:
                    self.grad[row] += grad
            self.ops, self.rows = [], []
        self.pending = []

    def _add(self, gate: Gate, positions: tuple[int, ...], row: int | None) -> None:
        if gate.name == "ry":
            c, s = self.cos[row], self.sin[row]
            self.ops.append((GATE_RY, positions[0], -1, (c, -s, s, c)))
        elif gate.name == "cnot" and self.ops and self.ops[-1][:3] == (GATE_RY, positions[1], -1):
            # un-applied just after an R_Y on its target (the paper's CNOT+R_Y block in reverse): one sweep
            _, target, _, matrix = self.ops[-1]
            self.ops[-1] = (GATE_RY_CNOT, target, positions[0], matrix)
            return
        elif gate.name in ("cnot", "cz"):
            self.ops.append((GATE_CNOT if gate.name == "cnot" else GATE_CZ, *positions, _NO_MATRIX))
        else:
            self.ops.append((GATE_MATRIX, positions[0], -1, _FIXED_MATRICES[gate.name]))
        self.rows.append(row)


class DistributedEngine:
    """Runs a placement plan of fused blocks on this rank's [2**n_local, batch] slice."""

    def __init__(self, blocks: list[Block], plan: PlacementPlan, groups: list[list[int]], paulis: list[Pauli],
                 complex_path: bool, state_dtype: torch.dtype, device: torch.device, collectives: Collectives,
                 swapper=None, library: KernelLibrary | None = None):
        self.blocks = blocks
        self.plan = plan
        self.groups = groups  # observable indices measured by each Measure step
        self.paulis = paulis
        self.complex_path = complex_path
        self.state_dtype = state_dtype
        self.device = device
        self.collectives = collectives
        self.swapper = swapper
        self.library = library  # compiled kernels for the shared real blocks, both passes, or None: torch
        self.n_local = plan.n_qubits - len(plan.initial_global)
        # each block's gates in order, with the `rotation_angles` row of each rotation (None for fixed gates)
        self.gate_rows = []
        for block, offset in zip(blocks, rotation_offsets(blocks)):
            rows = iter(range(offset, offset + len(block.rotations)))
            self.gate_rows.append([(gate, next(rows) if gate.is_parametric else None)
                                   for gate in block.gates])

    def initial_state(self, psi0: torch.Tensor | None, batch: int) -> torch.Tensor:
        """This rank's slice (rank = the high index bits) of the given amplitudes, or of |0...0>."""
        size = 2**self.n_local
        if psi0 is not None:
            rank = self.collectives.rank
            # a copy, never a view of psi0: the forward pass reuses the slice's memory
            return psi0[:, rank * size:(rank + 1) * size].transpose(0, 1).clone(memory_format=torch.contiguous_format)
        state = zero_state((size, batch), self.state_dtype, self.device)
        if self.collectives.rank == 0:
            state[0] = 1
        return state

    def _measured(self, group: int, global_qubits: tuple[int, ...]) -> tuple[list[Pauli], torch.Tensor]:
        """The group's Paulis restricted to local qubits, and the ±1 their global Z factors give on this rank."""
        rank = self.collectives.rank
        held = {q: p for p, q in enumerate(global_qubits)}
        local, signs = [], []
        for pauli in (self.paulis[i] for i in self.groups[group]):
            bits = sum((rank >> held[q]) & 1 for q in pauli.z if q in held)
            local.append(Pauli(pauli.x, pauli.y, frozenset(q for q in pauli.z if q not in held)))
            signs.append(-1.0 if bits % 2 else 1.0)
        return local, torch.tensor(signs, dtype=torch.float64)

    def forward(self, psi0, matrices, batch):
        state = self.initial_state(psi0, batch)
        layout, global_qubits = self.plan.initial_local_layout, self.plan.initial_global
        if psi0 is None:  # |0...0> looks the same in every layout: start in the one blocks run best in
            layout = tuple(sorted(layout))
        self.globals_before = []
        partial = torch.zeros(batch, len(self.paulis), dtype=state.real.dtype, device=state.device)
        applier = SliceApplier(self.blocks, self.library)
        for step in self.plan.steps:
            if isinstance(step, Exchange):
                applier.release()
                self.globals_before.append(global_qubits)
                state, layout, global_qubits = self.swapper.swap(state, layout, global_qubits, step.positions,
                                                                 step.local_qubits)
            elif isinstance(step, Apply) and matrices[step.block].shape[0] == 1:
                state, layout = applier.apply(state, layout, step.block, matrices[step.block])
            elif isinstance(step, Apply):
                state, layout = apply_block(state, layout, self.blocks[step.block], matrices[step.block],
                                            self.complex_path)
            else:
                applier.release()
                local_paulis, signs = self._measured(step.group, global_qubits)
                measured = expectations(state, layout, local_paulis, self.complex_path)
                partial[:, self.groups[step.group]] = measured * signs.to(device=state.device, dtype=partial.dtype)
        self.final_layout, self.final_global = layout, global_qubits
        return self.collectives.sum(partial), [state]

    def backward(self, finals, params, grad_out, want_psi0):
        """`params`: the blocks' matrices, then `rotation_angles` (the compiled gates' angles)."""
        (psi,) = finals
        matrices, angles = params[:len(self.blocks)], params[len(self.blocks)]
        layout, global_qubits = self.final_layout, self.final_global
        # the plan ends with a Measure step, so the first step in reverse seeds λ (no zero state beforehand)
        lam = None
        grads = [torch.zeros_like(m) if m.requires_grad else None for m in matrices]
        before = list(self.globals_before)
        stages = _GateStages(angles)
        gated: set[int] = set()  # blocks un-applied gate by gate: the gradient goes to angles, not matrices
        for step in reversed(self.plan.steps):
            if isinstance(step, Apply) and self._compiled(step.block, psi, lam, matrices):
                stages.pending += [(gate, tuple(dense_positions(layout, gate.qubits, psi.shape[-1])), row)
                                   for gate, row in reversed(self.gate_rows[step.block])]
                gated.add(step.block)
                continue
            stages.unapply(self.library, psi, lam)
            if isinstance(step, Exchange):
                previous = before.pop()
                back = tuple(previous[p] for p in step.positions)
                psi, _, _ = self.swapper.swap(psi, layout, global_qubits, step.positions, back)
                lam, layout, global_qubits = self.swapper.swap(lam, layout, global_qubits, step.positions, back)
            elif isinstance(step, Apply):
                psi, lam, layout = self._unapply(step, psi, lam, layout, matrices, grads)
            else:
                local_paulis, signs = self._measured(step.group, global_qubits)
                weights = grad_out[:, self.groups[step.group]] * signs.to(device=grad_out.device, dtype=grad_out.dtype)
                seed = adjoint_seed(psi, layout, local_paulis, weights, self.complex_path)
                lam = seed if lam is None else lam.add_(seed)
        stages.unapply(self.library, psi, lam)
        grads = [None if b in gated else g for b, g in enumerate(grads)]
        *grads, grad_angles = self._summed([*grads, stages.grad if angles.requires_grad else None])
        grad_psi0 = None
        if want_psi0:
            local = permute_state(lam, layout, canonical_layout(self.n_local)).transpose(0, 1)
            grad_psi0 = self.collectives.gather_columns(local)
        return grad_psi0, [*grads, None if grad_angles is None else grad_angles.to(angles.dtype)]

    def _compiled(self, block: int, psi, lam, matrices) -> bool:
        """Whether the compiled adjoint un-applies this block's gates: a matrix shared by the batch, both
        states real CPU slices the kernels take. Any width: gates un-applied in place leave the layout as
        it is, so a wide block that the forward ran in torch (moving the layout) is un-applied in the layout
        it left."""
        return matrices[block].shape[0] == 1 and dense_applies(self.library, psi, 2) and \
            dense_applies(self.library, lam, 2)

    def _unapply(self, step: Apply, psi, lam, layout, matrices, grads):
        """Un-apply a block with torch: moved to the leading axes, then matmuls."""
        block, matrix = self.blocks[step.block], matrices[step.block]
        k = len(block.qubits)
        target = leading_layout(layout, block.msb_first)
        psi, lam = permute_state(psi, layout, target), permute_state(lam, layout, target)
        psi, _ = apply_block(psi, target, block, matrix, self.complex_path, inverse=True)
        if grads[step.block] is not None:
            local_grad = outer_on_leading(lam, psi, 2**k, per_sample=matrix.shape[0] > 1)
            grads[step.block] += reorder_matrix(local_grad, target[:k], block.msb_first)
        lam, _ = apply_block(lam, target, block, matrix, self.complex_path, inverse=True)
        return psi, lam, target

    def _summed(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Allreduce every block gradient in one message."""
        present = [g for g in grads if g is not None]
        if not present or self.collectives.size == 1:
            return grads
        total = self.collectives.sum(torch.cat([g.reshape(-1) for g in present]))
        out, offset = [], 0
        for g in grads:
            if g is None:
                out.append(None)
                continue
            out.append(total[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return out
