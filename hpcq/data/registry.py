"""Data sets by name, as configs and `hpcq embed --dataset` spell them.

`sst2-sentences` and `glue/<TASK>` read staged files under the data root; `SetFit/sst2` reads the Hugging
Face Hub (online only) or, when the name is a local folder, that folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hpcq.data.dataset import TextDataset
from hpcq.data.glue import GLUE_TASKS, load_glue
from hpcq.data.sst2 import SETFIT_SST2, SST2_SENTENCES, load_setfit_sst2, load_sst2_sentences
from hpcq.errors import DataError

DATASET_NAMES = (SST2_SENTENCES, *(f"glue/{task}" for task in GLUE_TASKS), SETFIT_SST2)


def load_dataset(
    name: str, root: Path | str | None = None, splits: Sequence[str] | None = None
) -> TextDataset:
    """Load data set `name` (one of `DATASET_NAMES`) from the data root (`HPCQ_DATA`, else ./data)."""
    if name == SST2_SENTENCES:
        return load_sst2_sentences(root, splits)
    if name.startswith("glue/"):
        return load_glue(name.removeprefix("glue/"), root, splits)
    if name == SETFIT_SST2:
        return load_setfit_sst2(splits=splits)
    raise DataError(f"unknown data set {name!r}; choose one of {list(DATASET_NAMES)}")
