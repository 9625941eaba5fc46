"""`hpcq embed`: a frozen sentence transformer turns a data set into HDF5 embedding shards.

Shard i goes to MPI rank i % world, so `mpiexec -n k hpcq embed ...` splits the work k ways, every rank
writing only its own shards. Shards that already exist for the same model and data are reused, so a killed
job resumes where it stopped and a finished one costs nothing to re-run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hpcq.data.dataset import TextDataset
from hpcq.data.paths import data_root
from hpcq.data.registry import load_dataset
from hpcq.data.sentence_model import (
    PACKAGED,
    SentenceModelSpec,
    load_sentence_model,
    body_checksum,
    normalisation,
    resolve_model,
    weights_sha256,
)
from hpcq.data.shards import shard_matches, shard_path, shard_rows, write_shard
from hpcq.errors import ConfigError
from hpcq.runtime import World, mpi_world


@dataclass
class EmbedReport:
    """What one `embed_dataset` call did, summed over all ranks.

    `sentences` counts encoded sentences (two per row for pair tasks) in computed shards only;
    `encode_seconds` is the slowest rank's time inside the encoder, model loading excluded.
    """

    dataset: str
    model_id: str
    out_dir: Path
    shards: list[Path]
    computed: int
    reused: int
    sentences: int
    encode_seconds: float
    load_seconds: float
    ranks: int
    rank: int = 0

    @property
    def sentences_per_second(self) -> float:
        """Encoding throughput of the whole job, or 0.0 when every shard was reused."""
        return self.sentences / self.encode_seconds if self.encode_seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """JSON-ready form, for `hpcq embed --json` and logs."""
        return {
            "dataset": self.dataset,
            "model": self.model_id,
            "out_dir": str(self.out_dir),
            "shards": len(self.shards),
            "computed": self.computed,
            "reused": self.reused,
            "sentences": self.sentences,
            "encode_seconds": round(self.encode_seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "ranks": self.ranks,
            "sentences_per_second": round(self.sentences_per_second, 1),
        }

    def summary(self) -> str:
        """One line for people: what was computed, what was reused, and the throughput."""
        speed = (
            (
                f", {self.sentences} sentences in {self.encode_seconds:.1f} s = "
                f"{self.sentences_per_second:.1f} sentences/s on {self.ranks} rank(s)"
            )
            if self.computed
            else ""
        )
        return (
            f"{self.dataset}: {len(self.shards)} shard(s) in {self.out_dir} "
            f"({self.computed} computed, {self.reused} reused{speed}); model {self.model_id}"
        )


def encode_texts(model: Any, texts: list[str], batch_size: int, bar: tqdm) -> np.ndarray:
    """float32 [len(texts), dim] embeddings, in the order of `texts`.

    Batches are formed longest-first so that each batch pads to similar lengths (what `encode` does inside
    one call), while per-batch calls keep the progress bar moving.
    """
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    order = np.argsort([-len(text) for text in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = model.encode(
            [texts[i] for i in rows], batch_size=len(rows), convert_to_numpy=True, show_progress_bar=False
        )
        bar.update(len(rows))
    return out


def _shard_arrays(
    model: Any, data: TextDataset, rows: slice, batch_size: int, bar: tqdm
) -> dict[str, np.ndarray]:
    arrays = {
        "embeddings": encode_texts(model, data.texts[rows], batch_size, bar),
        "labels": data.labels[rows],
        "ids": data.ids[rows],
        "split": data.splits[rows],
    }
    if data.texts_b is not None:
        arrays["embeddings_b"] = encode_texts(model, data.texts_b[rows], batch_size, bar)
    return arrays


def _shard_attrs(
    data: TextDataset,
    spec: SentenceModelSpec,
    model: Any,
    body: str,
    weights: str | None,
    checksum: str,
    index: int,
    count: int,
    rows: slice,
    rank: int,
) -> dict:
    return {
        "dataset": data.name,
        "model": spec.model_id,
        "body": body,
        # The transformer weights' own hash (the model publisher's number), beside `body`, which covers every
        # file of the body: a reader can name the weights without the folder at hand. "" when unknown.
        "weights_sha256": weights or "",
        "dimension": model.get_embedding_dimension(),
        "normalisation": normalisation(model),
        "checksum": checksum,
        "shard_index": index,
        "shard_count": count,
        "row_start": rows.start,
        "row_stop": rows.stop,
        "label_names": json.dumps(data.label_names),
        "written_by_rank": rank,
    }


def _sum_over_ranks(world: World, counts: dict[str, float], slowest: tuple[str, ...]) -> dict[str, float]:
    if world.comm is None:
        return counts
    from mpi4py import MPI

    return {
        key: world.comm.allreduce(value, op=MPI.MAX if key in slowest else MPI.SUM)
        for key, value in counts.items()
    }


def embed_dataset(
    dataset: str | TextDataset,
    model: str = PACKAGED,
    out_dir: Path | str | None = None,
    shard_size: int = 4096,
    batch_size: int = 64,
    root: Path | str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> EmbedReport:
    """Embed every row of `dataset` (a name for `load_dataset`, or a loaded `TextDataset`) with `model`
    ("packaged", a Hugging Face name or a local folder) into shards of `shard_size` rows under `out_dir`
    (default `<data root>/embeddings`). Under MPI each rank embeds shards i with i % world == rank."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    world = mpi_world()
    data = load_dataset(dataset, root) if isinstance(dataset, str) else dataset
    spec = resolve_model(model)
    out_dir = Path(out_dir) if out_dir is not None else data_root() / "embeddings"
    checksum = data.checksum()
    body = body_checksum(spec)  # None: a Hub model not fetched yet, so no shard can be of its weights
    blocks = shard_rows(len(data), shard_size)
    paths = [shard_path(out_dir, data.name, spec.slug, i, len(blocks)) for i in range(len(blocks))]
    mine = range(world.rank, len(blocks), world.size)
    todo = [
        i
        for i in mine
        if body is None
        or not shard_matches(paths[i], spec.model_id, body, checksum, i, len(blocks), blocks[i])
    ]
    load_seconds = encode_seconds = 0.0
    sentences = 0
    if todo:
        started = time.perf_counter()
        encoder = load_sentence_model(spec, device)
        load_seconds = time.perf_counter() - started
        body = body or body_checksum(spec)  # loading fetched a Hub model into the cache
        weights = weights_sha256(spec)
        per_row = 2 if data.is_pair else 1
        total = per_row * sum(blocks[i].stop - blocks[i].start for i in todo)
        label = f"embed {data.name}" + (f" (rank 0 of {world.size})" if world.size > 1 else "")
        with tqdm(total=total, desc=label, unit="sent", disable=not progress or world.rank != 0) as bar:
            for i in todo:
                started = time.perf_counter()
                arrays = _shard_arrays(encoder, data, blocks[i], batch_size, bar)
                encode_seconds += time.perf_counter() - started
                attrs = _shard_attrs(
                    data, spec, encoder, body, weights, checksum, i, len(blocks), blocks[i], world.rank
                )
                write_shard(paths[i], arrays, attrs)
        sentences = total
    counts = _sum_over_ranks(
        world,
        {
            "computed": len(todo),
            "reused": len(mine) - len(todo),
            "sentences": sentences,
            "encode_seconds": encode_seconds,
            "load_seconds": load_seconds,
        },
        slowest=("encode_seconds", "load_seconds"),
    )
    return EmbedReport(
        data.name,
        spec.model_id,
        out_dir,
        paths,
        int(counts["computed"]),
        int(counts["reused"]),
        int(counts["sentences"]),
        counts["encode_seconds"],
        counts["load_seconds"],
        world.size,
        world.rank,
    )
