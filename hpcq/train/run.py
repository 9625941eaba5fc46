"""`hpcq train`: load and validate a run config, check where it writes, then hand it to the trainer its
`task:` names.

The checks come before any data is loaded: an output that cannot be written, a data folder that is a file, or
a finished result that would be replaced fail in the first second instead of after the compute."""

from __future__ import annotations

import json
import sys
from importlib import import_module
from pathlib import Path

from hpcq.train.config import load_config

#: task → (module, function) with signature fn(config, out, resume) -> Path | None
TRAINERS = {
    "head": ("hpcq.train.head", "train_head"),
    "glue": ("hpcq.train.glue", "train_glue"),
    "joint": ("hpcq.train.joint", "train_joint"),
    "causal_lm": ("hpcq.train.causal_lm", "train_causal_lm"),
    "setfit": ("hpcq.train.setfit", "train_setfit"),
}
#: data folders a run config may name (read, and written when shards are missing)
DATA_FOLDERS = ("embeddings_dir", "tokens_dir")


def train_from_config(config_path: str | Path | None, overrides: list[str], out: str | Path,
                      resume: bool = False, overwrite: bool = False) -> Path | None:
    """Validate the config and the output, then run its task's trainer (imported only now); returns the result
    path on rank 0, None on other ranks and when `out` already holds this run's result (with `resume`)."""
    from hpcq.errors import ConfigError
    from hpcq.outputs import check_folder_path, check_output_file

    config = load_config(config_path, overrides)
    if config["task"] not in TRAINERS:
        raise ConfigError(f"task: {config['task']!r} has no trainer yet; `hpcq train` runs {', '.join(TRAINERS)}")
    out = check_output_file(Path(out), "--out")
    for key in DATA_FOLDERS:
        if config["data"].get(key):
            check_folder_path(Path(config["data"][key]), f"data.{key}")
    if finished_result(out, config, resume, overwrite):
        print(f"{out} already holds this run's result (same config): nothing to do; --overwrite reruns it",
              file=sys.stderr)
        return None
    module, function = TRAINERS[config["task"]]
    return getattr(import_module(module), function)(config, out, resume)


def finished_result(out: Path, config: dict, resume: bool, overwrite: bool) -> bool:
    """Whether `out` already holds the finished result of this very config, which `resume` keeps. Any other
    file there is refused unless `overwrite`: a finished run (hours of compute) is never replaced unasked."""
    from hpcq.errors import ConfigError
    from hpcq.results.schema import config_to_json

    if overwrite or not out.exists():
        return False
    if resume and _result_config(out) == json.loads(config_to_json(config)):  # as the run file stores it
        return True
    held = "the result of a run with another config (or a file that is no run result)" if resume else "a file"
    raise ConfigError(f"--out {out} already holds {held}; pass --overwrite to replace it, or choose another "
                      "--out" + ("" if resume else " (--resume keeps it when it is this run's finished result)"))


def _result_config(path: Path) -> dict | None:
    """The config stored in the run file at `path`, or None when it is not a readable run file."""
    from hpcq.errors import DataError
    from hpcq.results import read_run

    try:
        return read_run(path).config
    except DataError:
        return None
