"""Where staged data sets live: `$HPCQ_DATA`, else `./data`.

Compute nodes usually have no internet, so every loader reads only from this root; `hpcq stage` fills it on
the login node. Errors here say which path was looked at and how to point hpcq somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

from hpcq.errors import DataError

DATA_ENV = "HPCQ_DATA"
RESTAGE = (
    f"re-stage its data set with `hpcq stage --source <original data folder>` or set {DATA_ENV} to a "
    "complete copy"
)
"""The fix for a data file that is missing, empty or otherwise not the one its data set ships."""


def data_root() -> Path:
    """The data root: the `HPCQ_DATA` environment variable if set and non-empty, else `./data`."""
    configured = os.environ.get(DATA_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path("data")


def _root_origin(root: Path) -> str:
    configured = os.environ.get(DATA_ENV, "").strip()
    if configured:
        return f"{DATA_ENV}={configured}"
    return f"{DATA_ENV} is unset, so the data root is {root.resolve()}"


def dataset_dir(name: str, root: Path | str | None = None) -> Path:
    """The folder of data set `name` (e.g. `sst2-sentences`, `glue/SST-2`) under the data root.

    Raises DataError naming the missing path when the data set has not been staged there.
    """
    root = Path(root) if root is not None else data_root()
    path = root / name
    if not path.is_dir():
        raise DataError(
            f"data set {name!r} not found: {path} is not a folder ({_root_origin(root)}). "
            f"Set {DATA_ENV} to the folder that holds the staged data sets, or stage them there with "
            f"`hpcq stage --source <folder with {name}> --dest {root}`"
        )
    return path


def data_file(folder: Path, file_name: str) -> Path:
    """`folder/file_name`, or a DataError naming the missing file and how to restore it."""
    path = folder / file_name
    if not path.is_file():
        raise DataError(f"data file {path} is missing; {RESTAGE}")
    return path
