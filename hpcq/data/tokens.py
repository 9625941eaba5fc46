"""GLUE splits tokenized into HDF5 token shards, one file per (task, split, model, max_length).

`<out_dir>/glue-<TASK>-<split>-<model>-L<max_length>.h5` holds datasets `input_ids` (int32 [rows,
max_length], padded), `attention_mask` and `token_type_ids` (int8), `labels` (int64, or float32 for STS-B) and
`ids`; attributes `task`, `split`, `model` (the resolved model id), `tokenizer` (sha256 of the tokenizer's full
definition), `max_length`, `source_checksum` (`TextDataset.checksum` of the split) and `checksum` (sha256 of the
arrays). Files are written atomically; a shard whose attributes all match and whose arrays still hash to
`checksum` is reused instead of tokenizing again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
from tqdm.auto import tqdm

from hpcq.data.glue import glue_task, load_glue
from hpcq.data.paths import data_root
from hpcq.data.sentence_model import PACKAGED, SentenceModelSpec, resolve_model
from hpcq.data.shards import read_shard_attrs, write_shard
from hpcq.errors import ConfigError, DataError

ARRAYS = ("input_ids", "attention_mask", "token_type_ids", "labels")
_CHUNK = 2048  # rows per tokenizer call: large enough for the fast tokenizer's batching, small for the progress bar


@dataclass
class TokenShard:
    """One tokenized split: arrays by name (see module docstring), row ids, and the file's attributes."""

    arrays: dict[str, np.ndarray]
    ids: np.ndarray
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return len(self.ids)


def load_tokenizer(spec: SentenceModelSpec) -> Any:
    """The Hugging Face tokenizer of a resolved model; the packaged one never touches the network."""
    if spec.requested == PACKAGED:
        os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec.location, local_files_only=spec.local)
    except OSError as err:
        raise DataError(
            f"could not load the tokenizer of model {spec.requested!r} ({err}); pass '{PACKAGED}', a local "
            f"model folder, or a Hugging Face name that is cached here"
        ) from err


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of everything that decides the token ids (vocabulary, normaliser, pre-tokeniser, templates)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def token_shard_path(out_dir: Path, task: str, split: str, model_slug: str, max_length: int) -> Path:
    """Where the tokens of one split live."""
    return Path(out_dir) / f"glue-{task}-{split}-{model_slug}-L{max_length}.h5"


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the token arrays, in `ARRAYS` order."""
    digest = hashlib.sha256()
    for name in ARRAYS:
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _tokenize(tokenizer: Any, texts: list[str], texts_b: list[str] | None, max_length: int,
              label: str) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS[:3]}
    for start in tqdm(range(0, len(texts), _CHUNK), desc=f"tokenize {label}", unit="chunk", leave=False):
        stop = start + _CHUNK
        encoded = tokenizer(texts[start:stop], texts_b[start:stop] if texts_b is not None else None,
                            max_length=max_length, truncation=True, padding="max_length",
                            return_token_type_ids=True, return_attention_mask=True, return_tensors="np")
        for name in parts:
            parts[name].append(encoded[name])
    dtypes = {"input_ids": np.int32, "attention_mask": np.int8, "token_type_ids": np.int8}
    return {name: np.concatenate(chunks).astype(dtypes[name]) if chunks else np.zeros((0, max_length), dtypes[name])
            for name, chunks in parts.items()}


def read_token_shard(path: Path | str) -> TokenShard:
    """A token shard written by `tokenize_glue`; DataError when it is missing, incomplete or damaged."""
    path = Path(path)
    attrs = read_shard_attrs(path) if path.is_file() else None
    if attrs is None:
        raise DataError(f"token shard {path} is missing or incomplete; write it with `hpcq tokenize`")
    with h5py.File(path, "r") as handle:
        arrays = {name: handle[name][()] for name in ARRAYS}
        ids = handle["ids"][()].astype(str)
    if arrays_checksum(arrays) != attrs["checksum"]:
        raise DataError(f"token shard {path} does not match its checksum; delete it and run `hpcq tokenize` again")
    return TokenShard(arrays, ids, attrs)


def _reusable(path: Path, wanted: dict[str, Any]) -> bool:
    attrs = read_shard_attrs(path) if path.is_file() else None
    if attrs is None or any(attrs.get(key) != value for key, value in wanted.items()):
        return False
    try:
        read_token_shard(path)
    except (DataError, OSError, KeyError):
        return False
    return True


def tokenize_glue(task: str, model: str = PACKAGED, out_dir: Path | str | None = None, max_length: int = 128,
                  splits: Sequence[str] = ("train", "dev"), root: Path | str | None = None) -> dict[str, Path]:
    """Tokenize the `splits` of GLUE `task` (from `<root or HPCQ_DATA>/glue/<task>/`) with `model`'s tokenizer.

    Writes one shard per split under `out_dir` (default `<data root>/tokens`) and returns {split: path};
    complete matching shards are reused.
    """
    glue_task(task)
    if not 8 <= max_length <= 4096:
        raise ConfigError(f"max_length={max_length} is out of range; use a token count such as 128 (8 to 4096)")
    out_dir = Path(out_dir) if out_dir is not None else data_root() / "tokens"
    spec = resolve_model(model)
    tokenizer = load_tokenizer(spec)
    fingerprint = tokenizer_fingerprint(tokenizer)
    paths = {}
    for split in splits:
        data = load_glue(task, root=root, splits=[split])
        path = token_shard_path(out_dir, task, split, spec.slug, max_length)
        wanted = {"task": task, "split": split, "model": spec.model_id, "tokenizer": fingerprint,
                  "max_length": max_length, "source_checksum": data.checksum()}
        if not _reusable(path, wanted):
            arrays = _tokenize(tokenizer, data.texts, data.texts_b, max_length, f"{task}/{split}")
            arrays["labels"] = data.labels
            write_shard(path, {**arrays, "ids": data.ids}, {**wanted, "checksum": arrays_checksum(arrays),
                                                            "rows": len(data)})
        paths[split] = path
    return paths
