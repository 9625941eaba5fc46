"""`hpcq train`: load and validate a run config, then hand it to the trainer its `task:` names."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from hpcq.train.config import load_config

#: task → (module, function) with signature fn(config, out, resume) -> Path | None
TRAINERS = {
    "head": ("hpcq.train.head", "train_head"),
    "glue": ("hpcq.train.glue", "train_glue"),
    "joint": ("hpcq.train.joint", "train_joint"),
    "causal_lm": ("hpcq.train.causal_lm", "train_causal_lm"),
}


def train_from_config(config_path: str | Path | None, overrides: list[str], out: str | Path,
                      resume: bool = False) -> Path | None:
    """Validate the config, then run its task's trainer (imported only now); returns the result path on rank 0."""
    from hpcq.errors import ConfigError

    config = load_config(config_path, overrides)
    if config["task"] not in TRAINERS:
        raise ConfigError(f"task: {config['task']!r} has no trainer yet; `hpcq train` runs {', '.join(TRAINERS)}")
    module, function = TRAINERS[config["task"]]
    return getattr(import_module(module), function)(config, out, resume)
