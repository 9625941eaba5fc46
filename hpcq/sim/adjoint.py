"""Adjoint-method gradients as one autograd function, shared by the state-vector backends.

Forward runs an engine over the fused blocks without recording a graph; backward starts from the final
state ψ and the seed λ = 2 Σ g_i O_i ψ, un-applies each block to ψ and λ, and reads dL/dU = λ ⊗ ψ̄ per
block; autograd then carries dL/dU back to the angles through `block_matrices`. Memory: a few states,
whatever the depth. The engines (statevector's torch engine, the distributed and the custatevec ones) differ
in where the state lives and how a block is applied; this is the interface they share.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch


class AdjointEngine(Protocol):
    """Runs a compiled circuit's blocks forward, and backward by the adjoint method."""

    def forward(self, psi0: torch.Tensor | None, matrices: Sequence[torch.Tensor],
                batch: int) -> tuple[torch.Tensor, Any]:
        """([batch, n_observables] expectations, the final states the backward pass starts from)."""

    def backward(self, finals: Any, matrices: Sequence[torch.Tensor], grad_out: torch.Tensor,
                 want_psi0: bool) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """(dL/dψ0 when `want_psi0`, dL/dU per block matrix or None where it needs none)."""


class AdjointExpectation(torch.autograd.Function):
    """Expectation values whose backward is the adjoint method rather than stored intermediates.

    `AdjointExpectation.apply(engine, batch, psi0, *matrices)`: `psi0` the initial states (None for |0…0>),
    `matrices` the blocks' matrices from `hpcq.sim.compile.block_matrices`."""

    @staticmethod
    def forward(ctx, engine: AdjointEngine, batch: int, psi0, *matrices):
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
