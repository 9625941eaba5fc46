"""Forward and adjoint passes over a placement plan on one rank's slice of the state.

The engine has the interface of the statevector backend's engine (`forward(psi0, matrices, batch)` returns
the outputs and what backward needs; `backward(finals, matrices, grad_out, want_psi0)` returns the gradients
of the initial amplitudes and of every block matrix), so the same autograd function drives both. Each rank
applies the same fused blocks to its slice; sums over amplitudes (expectation values, dL/dU) are local sums
followed by one allreduce; an index-bit swap in the forward pass is undone by the same swap in reverse on ψ
and λ in the backward pass. With the compiled kernels, runs of consecutive shared real blocks are un-applied
from ψ and λ in place as stages, each block's dL/dU reduced in the same pass (`unapply_dense`), whatever index
bits their qubits occupy; other blocks are moved to the leading axes and un-applied by torch matmuls.
"""

from __future__ import annotations

import torch

from hpcq.sim.distributed.local import SliceApplier
from hpcq.sim.distributed.placement import Apply, Exchange, PlacementPlan
from hpcq.sim.fusion import Block
from hpcq.sim.kernel import KernelLibrary
from hpcq.sim.kernel.dense import dense_applies, dense_positions, stage_fits, unapply_dense
from hpcq.sim.layout import (
    Layout, apply_matrix, canonical_layout, leading_layout, outer_on_leading, permute_state, reorder_matrix,
)
from hpcq.sim.measure import adjoint_seed, expectations
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

    def initial_state(self, psi0: torch.Tensor | None, batch: int) -> torch.Tensor:
        """This rank's slice (rank = the high index bits) of the given amplitudes, or of |0...0>."""
        size = 2**self.n_local
        if psi0 is not None:
            rank = self.collectives.rank
            # a copy, never a view of psi0: the forward pass reuses the slice's memory
            return psi0[:, rank * size:(rank + 1) * size].transpose(0, 1).clone(memory_format=torch.contiguous_format)
        state = torch.zeros(size, batch, dtype=self.state_dtype, device=self.device)
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

    def backward(self, finals, matrices, grad_out, want_psi0):
        (psi,) = finals
        layout, global_qubits = self.final_layout, self.final_global
        # the plan ends with a Measure step, so the first step in reverse seeds λ (no zero state beforehand)
        lam = None
        grads = [torch.zeros_like(m) if m.requires_grad else None for m in matrices]
        before = list(self.globals_before)
        stage: list[int] = []  # blocks for the compiled kernels, in the order they are un-applied
        for step in reversed(self.plan.steps):
            if isinstance(step, Apply) and self._compiled(step.block, psi, lam, matrices):
                if not self._fits(stage + [step.block], layout, psi):
                    self._unapply_stage(stage, psi, lam, layout, matrices, grads)
                    stage = []
                stage.append(step.block)
                continue
            self._unapply_stage(stage, psi, lam, layout, matrices, grads)
            stage = []
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
        self._unapply_stage(stage, psi, lam, layout, matrices, grads)
        grads = self._summed(grads)
        grad_psi0 = None
        if want_psi0:
            local = permute_state(lam, layout, canonical_layout(self.n_local)).transpose(0, 1)
            grad_psi0 = self.collectives.gather_columns(local)
        return grad_psi0, grads

    def _compiled(self, block: int, psi, lam, matrices) -> bool:
        """Whether the compiled adjoint un-applies this block: a matrix shared by the batch, both states real
        CPU slices it takes."""
        k = len(self.blocks[block].qubits)
        return matrices[block].shape[0] == 1 and dense_applies(self.library, psi, k) and \
            dense_applies(self.library, lam, k)

    def _fits(self, stage: list[int], layout, psi) -> bool:
        """Whether these blocks can be un-applied as one stage (`stage_fits`)."""
        bits = {p for b in stage for p in dense_positions(layout, self.blocks[b].qubits, psi.shape[-1])}
        return stage_fits(bits, psi.numel().bit_length() - 1, psi.dtype)

    def _unapply_stage(self, stage: list[int], psi, lam, layout, matrices, grads) -> None:
        """Un-apply the stage's blocks from ψ and λ in place (one pass over both), adding each dL/dU."""
        if not stage:
            return
        batch = psi.shape[-1]
        blocks = [(dense_positions(layout, self.blocks[b].qubits, batch), matrices[b][0]) for b in stage]
        for b, local_grad in zip(stage, unapply_dense(self.library, psi, lam, blocks)):
            if grads[b] is not None:
                grads[b] += local_grad.to(matrices[b].dtype)

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
