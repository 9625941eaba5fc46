"""Checkpoints that survive a killed job: written to a temporary name, then atomically renamed.

A Slurm requeue or `scancel` at any moment leaves either the previous checkpoint or the new one, never a
half-written file, so `--resume` always finds a consistent state.

A checkpoint holds only tensors and plain values (numbers, strings, lists, dicts, and the dataclasses a trainer
names), and is loaded with torch's restricted unpickler: a planted `OUT.h5.ckpt` next to a result, which every
workflow job reads under `--resume`, cannot run code.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcq.errors import ConfigError, DataError
from hpcq.outputs import first_line, writing


def checkpoint_path(result_path: str | Path) -> Path:
    """Where the checkpoint of the run that will write `result_path` lives."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name + ".ckpt")


def plain_values(value: Any) -> Any:
    """`value` with every numpy scalar (a metric from numpy, a config value) made the Python number it holds,
    through dicts, lists, tuples and dataclasses: the restricted loader refuses numpy's scalar type."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_values(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: plain_values(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, numbers, RNG states, curves) atomically; a full disk is a one-line error."""
    with writing(Path(path), "checkpoint") as tmp:
        torch.save(plain_values(state), tmp)


def load_checkpoint(path: str | Path, mmap: bool = False, types: Sequence[type] = ()) -> dict[str, Any] | None:
    """The saved state, or None when there is no checkpoint yet. `mmap`: map the file instead of reading it
    (when every rank of a node loads it, they share the pages). `types`: the classes (dataclasses of plain
    values) the checkpoint may hold besides tensors and plain values; anything else is refused unexecuted."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with torch.serialization.safe_globals(list(types)):
            return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(f"checkpoint {path} holds more than tensors and plain values ({_refused(err)}), so it was "
                        "not loaded, as that could run code (hpcq before this check also saved numpy arrays): "
                        "delete it, or rerun without --resume") from err
    except Exception as err:  # a torn file cannot happen through save_checkpoint, but disks lie
        raise DataError(f"checkpoint {path} is unreadable ({first_line(err)}); delete it to restart the run") from err


def _refused(err: pickle.UnpicklingError) -> str:
    """What the file asked for (e.g. `GLOBAL posix.system`), out of torch's many-line refusal."""
    asked = re.search(r"GLOBAL [\w.]+|[Uu]nsupported operand \w+", str(err))
    return asked.group(0) if asked else "objects of other types"


def load_run_checkpoint(path: str | Path, config: dict, mmap: bool = False,
                        types: Sequence[type] = ()) -> dict[str, Any] | None:
    """`load_checkpoint`, refusing a checkpoint saved under another run config (its `config` entry)."""
    saved = load_checkpoint(path, mmap, types)
    if saved is not None and saved["config"] != config:
        raise ConfigError(f"checkpoint {path} belongs to a run with another config; delete it to start over, "
                          "or run without --resume")
    return saved
