"""GLUE task files (`glue/<TASK>/{train,dev,test}.tsv`) for SST-2, MRPC, RTE, CoLA and STS-B.

The files are parsed exactly as GLUE ships them (see `glue/README.md`): tab-separated with no quote handling
(RTE, MRPC and STS-B contain bare `"`), CoLA's train/dev without a header, MRPC's header behind a UTF-8
byte-order mark, RTE's string labels, STS-B's float scores, and test files without labels.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcq.data.dataset import (
    UNLABELLED,
    TextDataset,
    choose_splits,
    class_label,
    concat_splits,
    malformed_row,
    require_rows,
)
from hpcq.data.paths import data_file, dataset_dir
from hpcq.errors import DataError

SPLITS = ("train", "dev", "test")
_BINARY = {"0": 0, "1": 1}


@dataclass(frozen=True)
class GlueTask:
    """How one task's files are laid out. `classes` maps label text to class id; None means a float score."""

    name: str
    columns: tuple[str, ...]
    test_columns: tuple[str, ...]
    text: str
    label: str
    text_b: str | None = None
    classes: dict[str, int] | None = None
    label_names: tuple[str, ...] | None = None
    header: bool = True
    score_range: tuple[float, float] | None = None


_STSB_COLUMNS = (
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
)

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "SST-2",
            ("sentence", "label"),
            ("index", "sentence"),
            text="sentence",
            label="label",
            classes=_BINARY,
            label_names=("negative", "positive"),
        ),
        GlueTask(
            "CoLA",
            ("source", "label", "author_mark", "sentence"),
            ("index", "sentence"),
            text="sentence",
            label="label",
            classes=_BINARY,
            label_names=("unacceptable", "acceptable"),
            header=False,
        ),
        GlueTask(
            "MRPC",
            ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
            ("index", "#1 ID", "#2 ID", "#1 String", "#2 String"),
            text="#1 String",
            text_b="#2 String",
            label="Quality",
            classes=_BINARY,
            label_names=("not_paraphrase", "paraphrase"),
        ),
        GlueTask(
            "RTE",
            ("index", "sentence1", "sentence2", "label"),
            ("index", "sentence1", "sentence2"),
            text="sentence1",
            text_b="sentence2",
            label="label",
            classes={"entailment": 0, "not_entailment": 1},
            label_names=("entailment", "not_entailment"),
        ),
        GlueTask(
            "STS-B",
            (*_STSB_COLUMNS, "score"),
            _STSB_COLUMNS,
            text="sentence1",
            text_b="sentence2",
            label="score",
            score_range=(0.0, 5.0),
        ),
    )
}


def glue_task(name: str) -> GlueTask:
    """The task description for `name` (e.g. "RTE"), or a DataError listing the supported tasks."""
    if name not in GLUE_TASKS:
        raise DataError(f"unknown GLUE task {name!r}; supported: {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[name]


def _score(path: Path, line: int, raw: str, task: GlueTask) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise malformed_row(path, line, f"a number in column {task.label!r}", raw) from None
    low, high = task.score_range
    if not low <= value <= high:
        raise DataError(
            f"{path}:{line}: {task.name} score {value} is outside [{low}, {high}]; the file is corrupt, "
            f"re-stage it with `hpcq stage`"
        )
    return value


def _read_tsv(path: Path, task: GlueTask, split: str) -> dict:
    labelled = split != "test"
    columns = task.columns if labelled else task.test_columns
    has_header = task.header or not labelled
    texts, texts_b, labels = [], [], []
    # utf-8-sig drops MRPC's byte-order mark; newline="" is what csv needs to see line ends itself.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for fields in reader:
            line = reader.line_num
            if has_header and line == 1:
                if tuple(fields) != columns:
                    raise malformed_row(path, line, f"the header {list(columns)}", "\t".join(fields))
                continue
            if len(fields) != len(columns):
                raise malformed_row(
                    path,
                    line,
                    f"{len(columns)} tab-separated fields {list(columns)}, found {len(fields)}",
                    "\t".join(fields),
                )
            row = dict(zip(columns, fields))
            texts.append(row[task.text])
            if task.text_b is not None:
                texts_b.append(row[task.text_b])
            if not labelled:
                labels.append(UNLABELLED if task.classes is not None else np.nan)
            elif task.classes is not None:
                labels.append(class_label(path, line, row[task.label], task.name, task.classes))
            else:
                labels.append(_score(path, line, row[task.label], task))
    return require_rows(path, {"split": split, "texts": texts, "texts_b": texts_b, "labels": labels})


def load_glue(
    task_name: str, root: Path | str | None = None, splits: Sequence[str] | None = None
) -> TextDataset:
    """GLUE task `task_name` from `<root>/glue/<task>/`; all of train, dev and test unless `splits` says.

    Test rows carry `UNLABELLED` (classification) or NaN (STS-B) as label: GLUE keeps test labels private.
    """
    task = glue_task(task_name)
    chosen = choose_splits(splits, SPLITS, "GLUE")
    folder = dataset_dir(f"glue/{task.name}", root)
    parts = [_read_tsv(data_file(folder, f"{split}.tsv"), task, split) for split in chosen]
    label_dtype = "int64" if task.classes is not None else "float32"
    return concat_splits(
        f"glue/{task.name}", parts, label_dtype, task.label_names, pair=task.text_b is not None
    )
