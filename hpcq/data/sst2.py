"""Sentence-level binary SST-2: the staged `stsa.binary.*` files, or Hugging Face `SetFit/sst2` when online.

Both hold the same 6,920 / 872 / 1,821 sentences with gold labels in every split; the paper pooled all 9,613.
The staged files are the default because compute nodes have no internet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hpcq.data.dataset import (
    TextDataset,
    choose_splits,
    class_label,
    concat_splits,
    malformed_row,
    require_rows,
)
from hpcq.data.paths import data_file, dataset_dir
from hpcq.errors import DataError

SST2_SENTENCES = "sst2-sentences"
SETFIT_SST2 = "SetFit/sst2"
# The dataset repository's only data commit, so that online runs read exactly the files we describe.
SETFIT_REVISION = "00ea8ccb7a54b4e3780a3e51aa3f80361ff849c0"
SPLITS = ("train", "dev", "test")
LABEL_NAMES = ("negative", "positive")
_CLASSES = {"0": 0, "1": 1}


def _read_stsa(path: Path, split: str) -> dict:
    """One `<label> <sentence>` file: split at the first space only (sentences contain U+00A0 and `\\/`)."""
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="\n") as lines:
        for line_no, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            label, sep, text = line.partition(" ")
            if not sep or not text.strip():
                raise malformed_row(path, line_no, "'<label> <sentence>' (label, one space, sentence)", line)
            labels.append(class_label(path, line_no, label, "SST-2", _CLASSES))
            texts.append(text)
    return require_rows(path, {"split": split, "texts": texts, "labels": labels})


def load_sst2_sentences(root: Path | str | None = None, splits: Sequence[str] | None = None) -> TextDataset:
    """The staged sentence-level SST-2 (`<root>/sst2-sentences/stsa.binary.{train,dev,test}`)."""
    folder = dataset_dir(SST2_SENTENCES, root)
    parts = [
        _read_stsa(data_file(folder, f"stsa.binary.{split}"), split)
        for split in choose_splits(splits, SPLITS, "SST-2")
    ]
    return concat_splits(SST2_SENTENCES, parts, label_dtype="int64", label_names=LABEL_NAMES, pair=False)


def _read_setfit_jsonl(path: Path, split: str) -> dict:
    texts, labels = [], []
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                text, label = record["text"], record["label"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise malformed_row(path, line_no, 'a JSON object with "text" and "label"', line) from None
            labels.append(class_label(path, line_no, str(label), "SST-2", _CLASSES))
            texts.append(text)
    return require_rows(path, {"split": split, "texts": texts, "labels": labels})


def _setfit_file(source: str, file_name: str, revision: str) -> Path:
    """A file of the Hub data set `source`, downloaded (or taken from the Hub cache) at `revision`."""
    from huggingface_hub import constants, hf_hub_download

    if constants.HF_HUB_OFFLINE:
        raise DataError(
            f"data set {source!r} needs the Hugging Face Hub, but HF_HUB_OFFLINE is set. Use "
            f"'{SST2_SENTENCES}' (the same 9,613 sentences, staged under HPCQ_DATA) or pass a local snapshot "
            f"folder holding train.jsonl, dev.jsonl and test.jsonl"
        )
    try:
        return Path(hf_hub_download(source, file_name, repo_type="dataset", revision=revision))
    except Exception as err:  # network, auth and missing-file errors all mean the same to the user
        raise DataError(
            f"could not fetch {file_name} of {source!r} from the Hugging Face Hub ({err}). Offline, use "
            f"'{SST2_SENTENCES}' (the same sentences, staged under HPCQ_DATA) instead"
        ) from err


def load_setfit_sst2(
    source: str | Path = SETFIT_SST2, splits: Sequence[str] | None = None, revision: str = SETFIT_REVISION
) -> TextDataset:
    """SST-2 from Hugging Face `SetFit/sst2` (`{train,dev,test}.jsonl` with `text` and `label`).

    `source` is a Hub data set name (needs the network, once; the Hub cache serves later calls) or a local
    folder with the three files. Never needed offline: `load_sst2_sentences` reads the staged copy.
    """
    local = Path(source)
    parts = []
    for split in choose_splits(splits, SPLITS, "SST-2"):
        file_name = f"{split}.jsonl"
        path = (
            data_file(local, file_name) if local.is_dir() else _setfit_file(str(source), file_name, revision)
        )
        parts.append(_read_setfit_jsonl(path, split))
    return concat_splits(SETFIT_SST2, parts, label_dtype="int64", label_names=LABEL_NAMES, pair=False)
