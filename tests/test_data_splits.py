"""The paper's 435/77/9,101 protocol, the shipped splits, and the rank partition used for data parallelism."""

import numpy as np
import pytest
import torch

from hpcq.data import data_root, load_sst2_sentences, paper_split, partition, standard_split
from hpcq.data.splits import cross_validation_fold
from hpcq.errors import ConfigError, DataError
from hpcq.train.config import load_config
from hpcq.train.head import run_split


@pytest.fixture(scope="module")
def sst2():
    return load_sst2_sentences(data_root())


def test_paper_split_counts_balance_and_cover(sst2):
    split = paper_split(sst2.labels, seed=0)
    assert split.sizes() == {"train": 435, "validation": 77, "test": 9101}
    sampled = np.concatenate([split.train, split.validation])
    assert np.bincount(sst2.labels[sampled]).tolist() == [256, 256]
    # stratified: one class gets 39 of the 77 validation rows, the other 38
    assert sorted(np.bincount(sst2.labels[split.validation]).tolist()) == [38, 39]
    everything = np.concatenate([sampled, split.test])
    assert len(np.unique(everything)) == len(everything) == 9613
    # pooled: the sample draws from all three shipped splits
    assert set(sst2.splits[sampled]) == {"train", "dev", "test"}


def test_paper_split_is_deterministic_per_seed(sst2):
    first, again, other = (paper_split(sst2.labels, seed) for seed in (3, 3, 4))
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    assert not np.array_equal(first.train, other.train)


def test_cross_validation_folds_tile_the_labelled_rows_and_never_touch_the_test(sst2):
    split = paper_split(sst2.labels, seed=0)
    folds = [cross_validation_fold(split, sst2.labels, fold, 5, seed=0) for fold in range(5)]
    held_out = np.concatenate([f.validation for f in folds])
    labelled = np.concatenate([split.train, split.validation])
    assert np.array_equal(np.sort(held_out), np.sort(labelled))  # each labelled row validates exactly once
    for f in folds:
        assert np.array_equal(f.test, split.test)
        assert len(np.intersect1d(f.train, f.validation)) == 0
        assert len(f.train) + len(f.validation) == 512 and abs(len(f.validation) - 512 / 5) <= 2
        assert abs(np.bincount(sst2.labels[f.validation]).tolist()[0] - len(f.validation) / 2) <= 1  # stratified
    with pytest.raises(DataError, match="fold 5 of 5"):
        cross_validation_fold(split, sst2.labels, 5, 5, seed=0)


def test_a_fold_beyond_the_folds_names_both_keys(sst2):
    config = load_config(None, ["task=head", "data.folds=5", "data.fold=7"])
    with pytest.raises(ConfigError, match=r"data\.fold=7 must be below data\.folds=5; use --set data\.fold=0 \.\. 4"):
        run_split(config, np.asarray(sst2.labels), sst2.splits)


def test_paper_split_other_sizes_and_errors():
    labels = np.array([0] * 30 + [1] * 50 + [2] * 40)
    split = paper_split(labels, seed=1, per_class=20, validation_fraction=0.25)
    assert split.sizes() == {"train": 45, "validation": 15, "test": 60}
    assert np.bincount(labels[split.validation]).tolist() == [5, 5, 5]
    with pytest.raises(DataError, match=r"samples 40 rows per class, but class\(es\) \{0: 30\}"):
        paper_split(labels, seed=0, per_class=40)
    with pytest.raises(DataError, match="rows have no label"):
        paper_split(np.array([0, 1, -1]), seed=0, per_class=1)
    with pytest.raises(DataError, match="integer class labels"):
        paper_split(np.array([0.5, 1.5]), seed=0, per_class=1)


def test_standard_split(sst2):
    split = standard_split(sst2.splits)
    assert split.sizes() == {"train": 6920, "validation": 872, "test": 1821}
    assert (sst2.splits[split.validation] == "dev").all()
    with pytest.raises(DataError, match=r"no rows of split\(s\) \['dev'\]"):
        standard_split(np.array(["train", "test"]))


@pytest.mark.parametrize("n_samples, world", [(10, 3), (3, 4), (0, 2), (9613, 7), (5, 1)])
def test_partition_tiles_contiguously_and_balanced(n_samples, world):
    parts = [partition(n_samples, rank, world) for rank in range(world)]
    covered = np.concatenate([np.arange(n_samples)[part] for part in parts])
    assert np.array_equal(covered, np.arange(n_samples))
    sizes = [part.stop - part.start for part in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_partition_errors():
    with pytest.raises(ConfigError, match="rank 2 is outside 0..1"):
        partition(10, 2, 2)
    with pytest.raises(ConfigError, match="world size must be at least 1"):
        partition(10, 0, 0)


def test_partitioned_gradients_sum_to_the_one_rank_gradient():
    """The rule in `partition`'s docstring: per-rank loss sums over the GLOBAL batch size, summed across
    ranks, give the full-batch mean gradient, also for an uneven split (batch 7 over 3 ranks)."""
    generator = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(7, 5, generator=generator, dtype=torch.float64),
        torch.randn(7, generator=generator, dtype=torch.float64),
    )
    w = torch.randn(5, generator=generator, dtype=torch.float64, requires_grad=True)
    (full,) = torch.autograd.grad(((x @ w - y) ** 2).mean(), w)
    summed = torch.zeros_like(w)
    for rank in range(3):
        part = partition(len(x), rank, 3)
        (grad,) = torch.autograd.grad(((x[part] @ w - y[part]) ** 2).sum() / len(x), w)
        summed += grad
    assert torch.allclose(summed, full, rtol=0, atol=1e-12)
