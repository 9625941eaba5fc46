"""Data parallelism over MPI ranks: sums of gradients and metrics, and gathering per-rank state.

Every rank holds the whole model and draws the same global batch; rank r works on its slice
`hpcq.data.partition(len(batch), r, world)` and divides its summed loss by the GLOBAL batch size, so the
allreduce-SUM of the ranks' gradients is exactly the one-rank gradient of the batch mean. With one rank (no
MPI launcher) every function here is a no-op.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from hpcq.runtime import World


def allreduce_gradients(parameters: Iterable[torch.nn.Parameter], world: World) -> None:
    """Sum every trainable parameter's gradient over the ranks, in place (one flat message)."""
    trainable = [p for p in parameters if p.requires_grad]
    if world.comm is None or not trainable:
        return
    from mpi4py import MPI

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable]
    flat = torch.cat([g.reshape(-1) for g in grads]).contiguous()  # the widest dtype among them
    world.comm.Allreduce(MPI.IN_PLACE, flat.numpy(), op=MPI.SUM)
    offset = 0
    for p in trainable:
        p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype, copy=True)
        offset += p.numel()


def allreduce_sum(values: list[float], world: World) -> list[float]:
    """Elementwise sum of a short list of numbers over the ranks (metric counts and loss sums)."""
    if world.comm is None:
        return values
    from mpi4py import MPI

    return [float(v) for v in world.comm.allreduce(torch.tensor(values, dtype=torch.float64).numpy(), op=MPI.SUM)]


def gather_to_root(value: Any, world: World) -> list[Any]:
    """Every rank's `value`, in rank order, on rank 0 (other ranks get an empty list)."""
    if world.comm is None:
        return [value]
    gathered = world.comm.gather(value, root=0)
    return gathered if world.rank == 0 else []


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank."""
    return value if world.comm is None else world.comm.bcast(value, root=0)


def barrier(world: World) -> None:
    if world.comm is not None:
        world.comm.Barrier()
