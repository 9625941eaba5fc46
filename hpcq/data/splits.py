"""Train / validation / test index splits: the paper's low-data protocol and the splits as shipped.

Pure functions of labels (or split names) and a seed; they return index arrays into the data set's rows, so
the same split can index texts, embeddings and labels alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpcq.errors import DataError


@dataclass(frozen=True)
class SplitIndices:
    """Sorted, disjoint int64 row indices of each part."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Rows per part, e.g. {"train": 435, "validation": 77, "test": 9101}."""
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def _class_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"the paper split needs a 1-D array of integer class labels, got dtype {labels.dtype} and shape "
            f"{labels.shape}; regression tasks (STS-B) have no classes to balance"
        )
    if len(labels) and labels.min() < 0:
        raise DataError(
            f"the paper split pools labelled rows only, but {int((labels < 0).sum())} rows have no label "
            f"(GLUE test files); load the data set with splits=('train', 'dev')"
        )
    return labels


def _validation_quotas(class_sizes: np.ndarray, n_validation: int, rng: np.random.Generator) -> np.ndarray:
    """Validation rows per class, proportional to class size; leftover rows go to the classes with the largest
    remainders, ties broken at random (with equal classes of 256, one random class gets 39, the other 38).
    """
    exact = n_validation * class_sizes / class_sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    leftover = n_validation - int(quotas.sum())
    order = np.lexsort((rng.random(len(class_sizes)), -(exact - quotas)))
    quotas[order[:leftover]] += 1
    return quotas


def paper_split(
    labels: np.ndarray, seed: int, per_class: int = 256, validation_fraction: float = 0.15
) -> SplitIndices:
    """The paper's protocol: pool every row, sample `per_class` rows of each class (256 positive + 256
    negative), split them into train and validation, and test on every row not sampled.

    The validation size is ceil(validation_fraction · sampled), scikit-learn's `train_test_split` convention,
    which gives exactly the paper's 435 train / 77 validation from 512 (test: 9,101 of SST-2's 9,613).
    The split is stratified (38/39 per class in validation): with only 77 validation rows, model selection
    should not also have to absorb a random class imbalance. Deterministic for a given seed.
    """
    labels = _class_labels(labels)
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    short = {int(c): len(m) for c, m in zip(classes, members) if len(m) < per_class}
    if short:
        raise DataError(
            f"the paper split samples {per_class} rows per class, but class(es) {short} have fewer rows; "
            f"lower per_class or pool more data"
        )
    sampled = [rng.choice(m, size=per_class, replace=False) for m in members]
    n_sampled = per_class * len(classes)
    # round() first: float noise such as 0.1 * 770 = 77.00000000000001 must not make ceil() add a row.
    n_validation = math.ceil(round(validation_fraction * n_sampled, 9))
    quotas = _validation_quotas(np.full(len(classes), per_class), n_validation, rng)
    validation = np.concatenate([rows[:quota] for rows, quota in zip(sampled, quotas)])
    train = np.concatenate([rows[quota:] for rows, quota in zip(sampled, quotas)])
    test = np.setdiff1d(np.arange(len(labels)), np.concatenate(sampled))
    return SplitIndices(np.sort(train), np.sort(validation), test)


def standard_split(
    splits: np.ndarray, train: str = "train", validation: str = "dev", test: str = "test"
) -> SplitIndices:
    """The splits as shipped: rows whose original split name is `train`, `validation` or `test`."""
    splits = np.asarray(splits)
    parts = {name: np.flatnonzero(splits == name) for name in (train, validation, test)}
    empty = [name for name in (train, validation) if len(parts[name]) == 0]
    if empty:
        raise DataError(
            f"no rows of split(s) {empty} (the data set holds {sorted(set(splits.tolist()))}); load the data "
            f"set with those splits included"
        )
    return SplitIndices(parts[train], parts[validation], parts[test])


def subset_rows(n_rows: int, subset: int | None, seed: int) -> np.ndarray:
    """Sorted rows drawn at random (by `seed`) when `subset` < n_rows; all rows otherwise."""
    if subset is None or subset >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=subset, replace=False))


def cross_validation_fold(split: SplitIndices, labels: np.ndarray, fold: int, folds: int, seed: int) -> SplitIndices:
    """Fold `fold` of `folds` over a split's labelled rows (train and validation pooled): that fold validates,
    the others train, and the test rows are untouched. On the paper's protocol this chooses settings on all 512
    sampled sentences (five folds: about 102 validate each) instead of one set of 77, without a test row.
    Stratified: each class's rows are shuffled by `seed` and dealt to the folds in turn."""
    if not 2 <= folds <= len(split.train) + len(split.validation) or not 0 <= fold < folds:
        raise DataError(f"cross-validation fold {fold} of {folds}: folds must be 2 or more (and no more than the "
                        f"labelled rows) and fold between 0 and folds - 1")
    labels = _class_labels(labels)
    pooled = np.sort(np.concatenate([split.train, split.validation]))
    rng = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels[pooled]):
        rows = rng.permutation(pooled[labels[pooled] == label])
        validation.append(rows[fold::folds])
    held_out = np.sort(np.concatenate(validation))
    return SplitIndices(np.setdiff1d(pooled, held_out), held_out, split.test)
