"""The real workflow on tiny data sets whose files change in place after embedding or tokenizing: the embed
(tokenize) rule runs again and the runs retrain on the new data, instead of training on stale shards (issue 13,
finding 1)."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from hpcq.data import load_sst2_sentences
from hpcq.data.tokens import read_token_shard
from workflow_support import REPO, job_counts, shared_data, snakemake, write_study

ROWS = 12  # per split: embedding 36 sentences keeps each workflow run to seconds of work


def tiny_sst2(root: Path) -> Path:
    """A data root whose sst2-sentences holds the first ROWS lines of each real split file."""
    folder = root / "sst2-sentences"
    folder.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        lines = (shared_data() / "sst2-sentences" / f"stsa.binary.{split}").read_text(encoding="utf-8")
        (folder / f"stsa.binary.{split}").write_text("".join(lines.splitlines(keepends=True)[:ROWS]))
    return root


def logreg_study(source: Path, root: Path) -> dict:
    """Logistic regression on the packaged MiniLM's embeddings of the data staged from `source` into `root`
    (the files' own splits: the paper protocol needs more sentences), one seed, nothing else."""
    experiment = {
        "name": "baseline",
        "config": str(REPO / "config" / "runs" / "logreg.yaml"),
        "seeds": [0],
        "set": {"data.split": "standard"},
        "grid": {"model.kind": ["logreg"]},
    }
    data = {"source": str(source), "root": str(root), "datasets": ["sst2-sentences"]}
    return {"study": "datachange", "data": data, "classical_heads": [experiment], "report": False}


def shard_checksums(shards: Path) -> set[str]:
    checksums = set()
    for path in shards.glob("*.h5"):
        with h5py.File(path, "r") as handle:
            checksums.add(str(handle.attrs["checksum"]))
    return checksums


@pytest.mark.slow
def test_changed_data_re_embeds_and_retrains(tmp_path: Path) -> None:
    source, root = tiny_sst2(tmp_path / "source"), tmp_path / "data"
    study = write_study(tmp_path, logreg_study(source, root))
    runs = tmp_path / "results" / "datachange" / "runs" / "classical_heads"
    run = runs / "baseline" / "kind-logreg_seed-0.h5"
    shards = root / "embeddings" / "sst2-sentences" / "packaged"
    target = str(run.relative_to(tmp_path))

    first = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(study), timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    assert shard_checksums(shards) == {load_sst2_sentences(root).checksum()}
    trained = run.stat().st_mtime_ns

    # Staging copied the files byte for byte: their checksum is the one the embed rule ran with.
    unchanged = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(study), "--dry-run")
    assert unchanged.returncode == 0, unchanged.stderr[-4000:]
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr, unchanged.stderr[-4000:]

    # Every test label of the staged copy flipped, in place: the folder's time does not change, only the bytes.
    test_file = root / "sst2-sentences" / "stsa.binary.test"
    lines = test_file.read_text(encoding="utf-8").splitlines()
    test_file.write_text("".join(f"{1 - int(line[0])}{line[1:]}\n" for line in lines), encoding="utf-8")
    changed = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(study), timeout=600)
    assert changed.returncode == 0, changed.stderr[-4000:]
    assert "Job stats:" in changed.stderr, f"nothing re-ran on changed data: {changed.stderr[-2000:]}"
    assert job_counts(changed.stderr) == {"embed": 1, "classical_heads": 1}, changed.stderr[-4000:]
    assert shard_checksums(shards) == {load_sst2_sentences(root).checksum()}
    assert run.stat().st_mtime_ns > trained

    # The source changed after staging (two test rows fewer): staged again, re-embedded, retrained.
    source_test = source / "sst2-sentences" / "stsa.binary.test"
    source_test.write_text("".join(source_test.read_text(encoding="utf-8").splitlines(keepends=True)[:-2]))
    restaged = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(study), timeout=600)
    assert restaged.returncode == 0, restaged.stderr[-4000:]
    assert job_counts(restaged.stderr) == {"stage": 1, "embed": 1, "classical_heads": 1}, restaged.stderr[-4000:]
    assert (root / "sst2-sentences" / "stsa.binary.test").read_bytes() == source_test.read_bytes()


def glue_study(root: Path) -> dict:
    """QuanTA on the tiny GLUE SST-2 in `root`: the tokenize rule's shards are what its runs read."""
    experiment = {"name": "sst2", "config": str(REPO / "config" / "runs" / "quanta_glue.yaml"), "seeds": [0]}
    data = {"source": None, "root": str(root), "datasets": ["glue"]}
    return {"study": "tokenchange", "data": data, "adapters": [experiment], "report": False}


@pytest.mark.slow
def test_changed_glue_file_is_tokenized_again(tmp_path: Path) -> None:
    root = tmp_path / "data"
    task = root / "glue" / "SST-2"
    task.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = (shared_data() / "glue" / "SST-2" / f"{split}.tsv").read_text(encoding="utf-8")
        (task / f"{split}.tsv").write_text("".join(lines.splitlines(keepends=True)[: ROWS + 1]))
    study = write_study(tmp_path, glue_study(root))
    tokens = root / "tokens" / "SST-2" / "packaged" / "L128"
    dev = tokens / "glue-SST-2-dev-all-MiniLM-L6-v2-L128.h5"

    first = snakemake(tmp_path, str(tokens), "--cores", "1", "--configfile", str(study), timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    assert len(read_token_shard(dev)) == ROWS

    # Two dev rows fewer, rewritten in place.
    (task / "dev.tsv").write_text("".join((task / "dev.tsv").read_text().splitlines(keepends=True)[:-2]))
    changed = snakemake(tmp_path, str(tokens), "--cores", "1", "--configfile", str(study), timeout=600)
    assert changed.returncode == 0, changed.stderr[-4000:]
    assert "Job stats:" in changed.stderr, f"nothing re-ran on changed data: {changed.stderr[-2000:]}"
    assert job_counts(changed.stderr) == {"tokenize": 1}, changed.stderr[-4000:]
    assert len(read_token_shard(dev)) == ROWS - 2
