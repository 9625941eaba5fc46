"""Checkpoints that survive a killed job: written to a temporary name, then atomically renamed.

A Slurm requeue or `scancel` at any moment leaves either the previous checkpoint or the new one, never a
half-written file, so `--resume` always finds a consistent state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hpcq.atomic import atomic_path
from hpcq.errors import ConfigError, DataError


def checkpoint_path(result_path: str | Path) -> Path:
    """Where the checkpoint of the run that will write `result_path` lives."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name + ".ckpt")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, numbers, RNG states, curves) atomically."""
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any] | None:
    """The saved state, or None when there is no checkpoint yet. `mmap`: map the file instead of reading it
    (when every rank of a node loads it, they share the pages)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=False)
    except Exception as err:  # a torn file cannot happen through save_checkpoint, but disks lie
        raise DataError(f"checkpoint {path} is unreadable ({err}); delete it to restart the run") from err


def load_run_checkpoint(path: str | Path, config: dict, mmap: bool = False) -> dict[str, Any] | None:
    """`load_checkpoint`, refusing a checkpoint saved under another run config (its `config` entry)."""
    saved = load_checkpoint(path, mmap)
    if saved is not None and saved["config"] != config:
        raise ConfigError(f"checkpoint {path} belongs to a run with another config; delete it to start over, "
                          "or run without --resume")
    return saved
