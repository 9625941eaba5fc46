"""HDF5 embedding shards: `<dataset>-<model>-NNNNN-of-MMMMM.h5`, written whole or not at all, and read back.

Each shard holds a contiguous block of a data set's rows: datasets `embeddings` (float32 [rows, dim]),
`embeddings_b` (second sentence of pair tasks), `labels`, `ids`, `split`; attributes `dataset`, `model`,
`body` (the sentence body's files' checksum, `sentence_model.body_checksum`), `weights_sha256` (its weights
file's SHA-256, `sentence_model.weights_sha256`; "" when unknown or in shards older than it), `dimension`,
`normalisation`, `checksum` (sha256 of the whole source data set, `TextDataset.checksum`), `shard_index`,
`shard_count`, `row_start`, `row_stop`, `label_names` (JSON), `written_by_rank` and `complete`.
A shard is written to a temporary name and renamed, so a shard that exists is complete. Shards are keyed by
`checksum` and `body`: readers and `hpcq embed` use only shards whose both match the current data and body.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hpcq.atomic import atomic_path
from hpcq.data.sentence_model import body_checksum, resolve_model, weights_sha256
from hpcq.errors import DataError

SHARD_SUFFIX = ".h5"


def dataset_slug(dataset: str) -> str:
    """The file-name form of a data set name: `glue/SST-2` → `glue-SST-2`."""
    return dataset.replace("/", "-")


def shard_path(out_dir: Path, dataset: str, model_slug: str, index: int, count: int) -> Path:
    """Where shard `index` of `count` of `dataset` embedded by the model with `model_slug` lives."""
    return Path(out_dir) / f"{dataset_slug(dataset)}-{model_slug}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def shard_rows(n_rows: int, shard_size: int) -> list[slice]:
    """The row blocks of each shard: `shard_size` rows each, the last one shorter (one empty shard for no
    rows)."""
    if shard_size < 1:
        raise DataError(f"shard size must be at least 1 row, got {shard_size}")
    starts = range(0, max(n_rows, 1), shard_size)
    return [slice(start, min(start + shard_size, n_rows)) for start in starts]


def write_shard(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """Write one shard atomically: datasets from `arrays` (str arrays as UTF-8 strings), then `attrs`, with
    `complete=True` set last, into a temporary file that is renamed to `path`."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name, values in arrays.items():
            if values.dtype.kind == "U":
                handle.create_dataset(name, data=values.astype(object), dtype=h5py.string_dtype())
            else:
                handle.create_dataset(name, data=values)
        handle.attrs.update(attrs)
        handle.attrs["complete"] = True


def read_shard_attrs(path: Path) -> dict | None:
    """The attributes of a complete shard, or None if the file is unreadable or not marked complete."""
    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
    except OSError:
        return None
    return attrs if attrs.get("complete") else None


def shard_matches(
    path: Path, model_id: str, body: str, checksum: str, index: int, count: int, rows: slice
) -> bool:
    """True when `path` is a complete shard of exactly these rows of this data, made by this model's body."""
    attrs = read_shard_attrs(path)
    if attrs is None:
        return False
    wanted = {
        "model": model_id,
        "body": body,
        "checksum": checksum,
        "shard_index": index,
        "shard_count": count,
        "row_start": rows.start,
        "row_stop": rows.stop,
    }
    return all(attrs.get(key) == value for key, value in wanted.items())


@dataclass(frozen=True)
class EmbeddingTable:
    """A data set's embeddings in row order, with labels, ids and original split names."""

    embeddings: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    split: np.ndarray
    model: str
    dimension: int
    normalisation: str
    checksum: str
    embeddings_b: np.ndarray | None = None
    label_names: tuple[str, ...] | None = None
    body: str | None = None  # `body_checksum` of the body that made the shards
    weights_sha256: str | None = None  # that body's weights file hash; None when it has no weights file

    def __len__(self) -> int:
        return len(self.embeddings)


def _shards_of(shard_dir: Path, dataset: str) -> dict[Path, dict]:
    found = {}
    for path in sorted(shard_dir.glob(f"{dataset_slug(dataset)}-*-of-*{SHARD_SUFFIX}")):
        attrs = read_shard_attrs(path)
        if attrs is not None and attrs.get("dataset") == dataset:
            found[path] = attrs
    return found


def _complete_set(
    shards: dict[Path, dict], dataset: str, shard_dir: Path, model: str, body: str, checksum: str
) -> list[Path]:
    """One full run of shards 0..M-1 of this data by this body, in shard order."""
    embed_command = f"`hpcq embed --dataset {dataset} --model {model} --out-dir {shard_dir}`"
    for key, current, what in (("body", body, f"weights of model {model!r}"), ("checksum", checksum, "data")):
        fresh = {path: attrs for path, attrs in shards.items() if attrs.get(key) == current}
        if not fresh:
            recorded = sorted({str(attrs.get(key)) for attrs in shards.values()})
            raise DataError(
                f"the shards of {dataset} in {shard_dir} are stale: they were embedded from other {what} "
                f"({key} {recorded}, now {current}); re-embed with {embed_command}"
            )
        shards = fresh
    runs: dict[int, dict[int, Path]] = defaultdict(dict)
    for path, attrs in shards.items():
        runs[int(attrs["shard_count"])][int(attrs["shard_index"])] = path
    complete = [count for count, run in runs.items() if len(run) == count]
    if not complete:
        count, run = max(runs.items(), key=lambda item: len(item[1]))
        missing = sorted(set(range(count)) - set(run))
        raise DataError(
            f"embeddings of {dataset} in {shard_dir} are incomplete: shard(s) {missing} of {count} are "
            f"missing; run {embed_command} (it reuses the shards that exist)"
        )
    # Several shard sizes of the same data hold the same rows; the one with the fewest files reads fastest.
    count = min(complete)
    return [runs[count][index] for index in range(count)]


def load_embeddings(shard_dir: Path | str, dataset: str, model: str, checksum: str) -> EmbeddingTable:
    """Read every shard of `dataset` embedded by `model` (as `hpcq embed --model` spells it) from `shard_dir`.

    Checks that all shards are present and that they were made by `model`'s current body (`body_checksum`)
    from the data whose `TextDataset.checksum` is `checksum` (the data as it is now: shards of other data or
    other weights are stale), raising DataError with the command that fixes it otherwise.
    """
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise DataError(
            f"embedding folder {shard_dir} does not exist; create the shards with "
            f"`hpcq embed --dataset {dataset} --model {model} --out-dir {shard_dir}`"
        )
    spec = resolve_model(model)
    shards = _shards_of(shard_dir, dataset)
    mine = {path: attrs for path, attrs in shards.items() if attrs["model"] == spec.model_id}
    if not mine:
        others = sorted({attrs["model"] for attrs in shards.values()})
        made_by = f"only shards made by model(s) {others}" if others else "no shards"
        raise DataError(
            f"{shard_dir} holds {made_by} for data set {dataset}, but model {model!r} ({spec.model_id}) was "
            f"asked for. Embed with that model: `hpcq embed --dataset {dataset} --model {model} --out-dir "
            f"{shard_dir}`"
            + (", or set the config's model to the one that made the shards" if others else "")
        )
    body = body_checksum(spec)
    if body is None:
        raise DataError(
            f"model {model!r} is not in the Hugging Face cache here, so the shards of {dataset} in "
            f"{shard_dir} cannot be checked against its weights; run `hpcq embed --dataset {dataset} "
            f"--model {model} --out-dir {shard_dir}` (it fetches the model and reuses the shards that match)"
        )
    paths = _complete_set(mine, dataset, shard_dir, model, body, checksum)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for path in paths:
        with h5py.File(path, "r") as handle:
            for name in handle:
                data = handle[name]
                parts[name].append(data.asstr()[()] if h5py.check_string_dtype(data.dtype) else data[()])
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    attrs = mine[paths[0]]
    label_names = json.loads(attrs["label_names"])
    return EmbeddingTable(
        embeddings=columns["embeddings"],
        labels=columns["labels"],
        ids=columns["ids"].astype(str),
        split=columns["split"].astype(str),
        model=spec.model_id,
        dimension=int(attrs["dimension"]),
        normalisation=str(attrs["normalisation"]),
        checksum=str(attrs["checksum"]),
        embeddings_b=columns.get("embeddings_b"),
        label_names=tuple(label_names) if label_names is not None else None,
        body=str(attrs["body"]),
        # Shards written before the attribute existed: their body checksum matched the current body's, so its
        # weights are the ones that made them.
        weights_sha256=str(attrs.get("weights_sha256", "")) or weights_sha256(spec),
    )
