"""`hpcq train` for task "head": a classifier on frozen sentence embeddings, from run config to HDF5 result.

    embeddings (computed first when missing) → paper or standard split → head → train (torch heads: AdamW,
    early stopping, checkpoints, MPI data parallel; logreg/SVC: scikit-learn grid on validation) → test → one
    run file via `hpcq.results.write_run(kind="train")`.

Result groups: metrics/ (per-epoch train_loss, train_accuracy, val_loss, val_accuracy; per-step step_loss),
final/ (val_accuracy of the selected model, test_accuracy, test_size, train_size, val_size,
n_trainable_params, best_epoch, epochs_run, stopped_early), timing/ (epoch_s per epoch, total_s, test_s),
energy/ (EnergyMeter over this process's training and evaluation), model/ (parameter counts by part),
weights/ (the selected model's state dict, one dataset per tensor, for inference without retraining),
body/ (the sentence body that made the embeddings: `model` as configured, `model_id`, `checksum` of its files,
`weights_sha256` of its weights file; task setfit adds what tuned it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcq.data import (
    SplitIndices,
    embed_dataset,
    load_dataset,
    load_embeddings,
    paper_split,
    standard_split,
)
from hpcq.data.paths import data_root
from hpcq.data.splits import cross_validation_fold
from hpcq.energy import EnergyMeter
from hpcq.errors import ConfigError, DataError
from hpcq.models import build_head, trainable_parameter_count
from hpcq.models.sklearn_heads import SKLEARN_KINDS, fit_sklearn_head
from hpcq.runtime import World, mpi_world
from hpcq.sim.precision import DTYPES
from hpcq.train.checkpoint import checkpoint_path
from hpcq.train.dataparallel import barrier
from hpcq.train.loop import Split, fit, fit_and_test


@dataclass
class HeadData:
    """The embeddings of one run's train, validation and test rows."""

    train: Split
    validation: Split
    test: Split
    n_classes: int
    embeddings_dir: Path
    body: dict[str, Any] = field(default_factory=dict)  # the result's body/ group
    # seconds of the phases before the head's (task setfit: body tuning, re-embedding)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def in_features(self) -> int:
        return self.train.x.shape[1]


def embeddings_dir(data: dict) -> Path:
    return Path(data["embeddings_dir"]) if data["embeddings_dir"] else data_root() / "embeddings"


def load_or_embed(data: dict, progress: bool = True):
    """The data set's embedding table; embeds it first (all ranks together) when no complete set of shards of
    the data as it is now, by this model's current body, exists in `data.embeddings_dir`."""
    folder = embeddings_dir(data)
    try:
        dataset = load_dataset(data["dataset"])
    except DataError as err:
        raise DataError(f"data.dataset={data['dataset']!r}: the shards in data.embeddings_dir={str(folder)!r} are "
                        f"checked against the data set as it is now, which could not be read: {err}") from err
    try:
        return load_embeddings(folder, data["dataset"], data["model"], dataset.checksum())
    except DataError as err:
        # Missing, incomplete, stale (the data or the body changed since) or made by another model: embed
        # with the configured one (which reuses what matches); if that fails too, both reasons go into the
        # error, so shards of another model are named.
        why_not_loaded = str(err)
    try:
        embed_dataset(dataset, data["model"], folder, progress=progress)
    except DataError as err:
        raise DataError(f"data.dataset={data['dataset']!r}: no usable embeddings by data.model={data['model']!r} "
                        f"in data.embeddings_dir={str(folder)!r} ({why_not_loaded}), and embedding them failed: "
                        f"{err}") from err
    return load_embeddings(folder, data["dataset"], data["model"], dataset.checksum())


def run_split(config: dict, labels: np.ndarray, splits: np.ndarray) -> SplitIndices:
    """The run's train, validation and test rows: the paper's protocol over all rows' `labels`, or the shipped
    `splits` (test rows without a label left out)."""
    data = config["data"]
    seed = config["seed"] if data["split_seed"] is None else data["split_seed"]
    if data["split"] == "paper":
        split = paper_split(labels, seed, data["per_class"], data["validation_fraction"])
    else:
        shipped = standard_split(splits)
        split = SplitIndices(shipped.train, shipped.validation, shipped.test[labels[shipped.test] >= 0])
    if data["folds"] is None:
        return split
    if data["fold"] >= data["folds"]:
        raise ConfigError(f"data.fold={data['fold']} must be below data.folds={data['folds']}; use --set "
                          f"data.fold=0 .. {data['folds'] - 1}")
    return cross_validation_fold(split, labels, data["fold"], data["folds"], seed)


def load_head_data(config: dict, dtype: torch.dtype, progress: bool = True) -> HeadData:
    """Embed if needed, split (the paper's protocol or the shipped splits) and convert to tensors."""
    data = config["data"]
    table = load_or_embed(data, progress)
    labels = np.asarray(table.labels)
    split = run_split(config, labels, table.split)

    def part(rows: np.ndarray) -> Split:
        return Split(torch.as_tensor(table.embeddings[rows]).to(dtype), torch.as_tensor(labels[rows]).long())

    n_classes = len(table.label_names) if table.label_names else int(labels.max()) + 1
    body = {"model": data["model"], "model_id": table.model, "checksum": table.body,
            "weights_sha256": table.weights_sha256}
    return HeadData(part(split.train), part(split.validation), part(split.test), n_classes,
                    embeddings_dir(data), body)


def _sizes(data: HeadData) -> dict[str, int]:
    return {"train_size": len(data.train), "val_size": len(data.validation), "test_size": len(data.test)}


def train_sklearn_head(config: dict, data: HeadData, out: Path) -> Path:
    """logreg / SVC: grid on validation, then test; the same result schema as the torch heads."""
    as_numpy = lambda split: (split.x.double().numpy(), split.y.numpy())  # noqa: E731
    started = time.perf_counter()
    with EnergyMeter(config["energy"]["method"]) as meter:
        fitted = fit_sklearn_head(config["model"]["kind"], config["model"], as_numpy(data.train),
                                  as_numpy(data.validation), config["seed"])
        test_accuracy = float(fitted.model.score(*as_numpy(data.test)))
    grid = {key: [str(record[key]) if isinstance(record[key], str) else record[key] for record in fitted.grid]
            for key in fitted.grid[0]}
    return _write(out, config, data, metrics={f"grid_{key}": values for key, values in grid.items()},
                  final={"val_accuracy": fitted.val_accuracy, "test_accuracy": test_accuracy, **_sizes(data),
                         "n_trainable_params": fitted.n_trainable_params, "best_epoch": None, "epochs_run": 0,
                         "stopped_early": False},
                  timing={"total_s": time.perf_counter() - started},
                  energy=meter.reading.as_dict(),
                  extra={"model": {"selected": {k: str(v) for k, v in fitted.params.items()}}})


def train_torch_head(config: dict, data: HeadData, out: Path, resume: bool, world: World,
                     progress: bool = True) -> Path | None:
    """Quantum head or MLP: AdamW with early stopping, then the best model on the test set."""
    torch.manual_seed(config["seed"])  # identical initial weights on every rank
    model = build_head(config["model"], data.in_features, data.n_classes, DTYPES[config["train"]["dtype"]])
    if hasattr(model, "prepare"):
        model.prepare(data.train.x)
    started = time.perf_counter()
    tested = fit_and_test(model, data.test, config, world, lambda: fit(
        model, data.train, data.validation, config, world, checkpoint_path(out), resume, progress))
    if tested is None:
        return None
    counts = model.parameter_counts() if hasattr(model, "parameter_counts") else {}
    path = _write(out, config, data, extra={"model": {"parameters": counts}, "weights": tested.weights()},
                  **tested.result(started, world, _sizes(data), trainable_parameter_count(model)))
    checkpoint_path(out).unlink(missing_ok=True)  # the result is whole; the run cannot be resumed any further
    barrier(world)
    return path


def _write(out: Path, config: dict, data: HeadData, timing: dict[str, Any], extra: dict[str, Any],
           **groups: Any) -> Path:
    """The run file, with the body/ group and, after earlier phases (task setfit), their seconds: total_s then
    covers every phase and head_s the head's alone."""
    from hpcq.results import write_run

    if data.phases:
        timing = {**timing, **data.phases, "head_s": timing["total_s"],
                  "total_s": timing["total_s"] + sum(data.phases.values())}
    return write_run(out, kind="train", config=config, timing=timing, extra={**extra, "body": data.body},
                     **groups)


def train_head(config: dict, out: str | Path, resume: bool = False, progress: bool = True) -> Path | None:
    """Run one head training described by a validated run config (`hpcq.train.config.load_config`) and write
    its result to `out`; returns the path on rank 0 (None on other ranks)."""
    out = Path(out)
    world = mpi_world()
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    data = load_head_data(config, DTYPES[config["train"]["dtype"]], progress)
    if config["model"]["kind"] in SKLEARN_KINDS:
        return train_sklearn_head(config, data, out) if world.rank == 0 else None
    return train_torch_head(config, data, out, resume, world, progress)

