"""Which contiguous slice of samples each of the MPI ranks owns (the ranks themselves: `hpcq.runtime`)."""

from __future__ import annotations

from hpcq.errors import ConfigError


def partition(n_samples: int, rank: int, world: int) -> slice:
    """The contiguous, balanced slice of `n_samples` that `rank` of `world` ranks owns.

    The first `n_samples % world` ranks get one sample more; the slices tile 0..n_samples in rank order, so
    concatenating every rank's part in rank order restores the original order.

    Data parallelism: all ranks draw the same shuffled global batch B (same seed), and rank r works on
    `B[partition(len(B), r, world)]`. If each rank sums its per-sample losses and divides by the GLOBAL batch
    size len(B) (not its own part's size), an allreduce-SUM of the gradients is exactly the 1-rank gradient
    of the batch mean, even when len(B) does not divide evenly (a short last batch).
    """
    if world < 1:
        raise ConfigError(f"world size must be at least 1, got {world}")
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is outside 0..{world - 1} for a world of {world} ranks")
    if n_samples < 0:
        raise ConfigError(f"n_samples must be non-negative, got {n_samples}")
    base, extra = divmod(n_samples, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))
