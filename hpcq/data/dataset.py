"""One in-memory text data set: sentences (or sentence pairs), labels, stable ids and original split names.

Every loader returns this shape so that splitting, embedding and training never care which file format the
rows came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcq.data.paths import RESTAGE
from hpcq.errors import DataError

UNLABELLED = -1
"""Class label of a row whose file has no labels (GLUE test files); regression tasks use NaN instead."""


@dataclass(frozen=True)
class TextDataset:
    """Rows of one data set, in file order (train, then dev, then test).

    `labels` holds int64 class ids (`UNLABELLED` where the file has none) or, for regression tasks such as
    STS-B, float32 scores (NaN where the file has none). `label_names[i]` names class i; None for regression.
    `ids` are stable strings `<split>-<row>` (row = 0-based data row in that split's file).
    """

    name: str
    texts: list[str]
    labels: np.ndarray
    ids: np.ndarray
    splits: np.ndarray
    texts_b: list[str] | None = None
    label_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        sizes = {"labels": len(self.labels), "ids": len(self.ids), "splits": len(self.splits)}
        if self.texts_b is not None:
            sizes["texts_b"] = len(self.texts_b)
        wrong = {key: size for key, size in sizes.items() if size != n}
        if wrong:
            raise DataError(
                f"data set {self.name!r} has {n} texts but {wrong}; every column needs one per row"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks (MRPC, RTE, STS-B)."""
        return self.texts_b is not None

    def subset(self, indices: np.ndarray | slice) -> TextDataset:
        """The rows at `indices` (an index array or a slice), keeping name and label names."""
        rows = np.arange(len(self))[indices]
        return TextDataset(
            name=self.name,
            texts=[self.texts[i] for i in rows],
            labels=self.labels[rows],
            ids=self.ids[rows],
            splits=self.splits[rows],
            texts_b=None if self.texts_b is None else [self.texts_b[i] for i in rows],
            label_names=self.label_names,
        )

    def checksum(self) -> str:
        """sha256 over every row's id, split, label and text(s).

        Shards record it so that embeddings of changed (or differently subset) data are never reused.
        """
        digest = hashlib.sha256()
        texts_b = self.texts_b if self.texts_b is not None else [None] * len(self)
        for row in zip(self.ids.tolist(), self.splits.tolist(), self.labels.tolist(), self.texts, texts_b):
            digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()


def malformed_row(path: Path, line: int, expected: str, got: str) -> DataError:
    """The error for a row that does not parse: file, 1-based line number, what was expected and found."""
    shown = got if len(got) <= 120 else got[:117] + "..."
    return DataError(
        f"{path}:{line}: malformed row: expected {expected}, got {shown!r}. Fix or re-stage the file "
        f"(`hpcq stage` verifies it against the data set's README checksums)"
    )


def require_rows(path: Path, part: dict) -> dict:
    """`part` (one split file's columns, as the loaders read them), or a DataError when the file held no data
    rows: an empty split would otherwise drop out of the data set (or give empty shards) without a word."""
    if not part["texts"]:
        raise DataError(
            f"data file {path} holds no data rows, so split {part['split']!r} would be empty; {RESTAGE}"
        )
    return part


def class_label(path: Path, line: int, raw: str, task: str, classes: dict[str, int]) -> int:
    """The class id of label text `raw`, or a DataError when it is not one of the task's labels."""
    if raw not in classes:
        raise DataError(
            f"{path}:{line}: label {raw!r} is not one of {task}'s labels {sorted(classes)}. The file is "
            f"corrupt or belongs to another task; re-stage it with `hpcq stage`"
        )
    return classes[raw]


def choose_splits(splits: Sequence[str] | None, available: tuple[str, ...], what: str) -> tuple[str, ...]:
    """`splits` (all of `available` when None), or a DataError naming the unknown ones."""
    chosen = tuple(splits) if splits is not None else available
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise DataError(f"unknown {what} split(s) {unknown}; choose from {list(available)}")
    return chosen


def split_ids(split: str, n_rows: int) -> list[str]:
    """Stable ids `<split>-<row>` for `n_rows` rows of one split file."""
    return [f"{split}-{row:06d}" for row in range(n_rows)]


def concat_splits(
    name: str, parts: list[dict], label_dtype: str, label_names: tuple[str, ...] | None, pair: bool
) -> TextDataset:
    """Join per-split columns (dicts with split, texts, texts_b, labels) into one TextDataset."""
    texts: list[str] = []
    texts_b: list[str] = []
    labels: list = []
    ids: list[str] = []
    splits: list[str] = []
    for part in parts:
        texts += part["texts"]
        texts_b += part.get("texts_b", [])
        labels += part["labels"]
        ids += split_ids(part["split"], len(part["texts"]))
        splits += [part["split"]] * len(part["texts"])
    return TextDataset(
        name=name,
        texts=texts,
        labels=np.asarray(labels, dtype=label_dtype),
        ids=np.asarray(ids, dtype=str),
        splits=np.asarray(splits, dtype=str),
        texts_b=texts_b if pair else None,
        label_names=label_names,
    )
