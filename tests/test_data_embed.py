"""`hpcq embed` with the real packaged all-MiniLM-L6-v2 on 64 real SST-2 sentences: shards, reuse, the
reader's checks, and 2 MPI ranks against 1."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
from huggingface_hub import constants as hub_constants
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hpcq.data import (
    data_root,
    embed_dataset,
    load_embeddings,
    load_glue,
    load_sst2_sentences,
    packaged_model_path,
)
from hpcq.data.dataset import TextDataset
from hpcq.data.sentence_model import load_sentence_model, resolve_model
from hpcq.errors import DataError
from hpcq.train.head import load_or_embed

ROWS = "np.arange(0, 9613, 150)[:64]"  # spread over train, dev and test; shared with the MPI script below
SHARD_SIZE = 16
NAMES = [f"sst2-sentences-all-MiniLM-L6-v2-{i:05d}-of-00004.h5" for i in range(4)]


@pytest.fixture(scope="module")
def subset():
    return load_sst2_sentences(data_root()).subset(eval(ROWS))


@pytest.fixture(scope="module")
def embedded(subset, tmp_path_factory):
    """Shards of the 64 sentences, written once; tests that change them work on a copy (`shards_copy`)."""
    out = tmp_path_factory.mktemp("embeddings")
    report = embed_dataset(subset, out_dir=out, shard_size=SHARD_SIZE, batch_size=8, progress=False)
    return out, report


@pytest.fixture
def shards_copy(embedded, tmp_path):
    out = tmp_path / "embeddings"
    shutil.copytree(embedded[0], out)
    return out


def test_embed_writes_complete_shards(subset, embedded):
    out, report = embedded
    assert (report.computed, report.reused, report.sentences, report.ranks) == (4, 0, 64, 1)
    assert report.sentences_per_second > 0
    assert sorted(path.name for path in out.iterdir()) == NAMES
    model_id = resolve_model("packaged").model_id
    for index, name in enumerate(NAMES):
        with h5py.File(out / name) as shard:
            attrs = dict(shard.attrs)
            assert shard["embeddings"].shape == (16, 384) and shard["embeddings"].dtype == np.float32
            assert shard["ids"].asstr()[()].tolist() == subset.ids[index * 16 : (index + 1) * 16].tolist()
        assert attrs["model"] == model_id and attrs["dimension"] == 384 and attrs["normalisation"] == "l2"
        assert attrs["checksum"] == subset.checksum() and attrs["complete"]
        assert (attrs["shard_index"], attrs["shard_count"], attrs["row_start"]) == (index, 4, index * 16)


def test_embeddings_match_the_model_in_row_order(subset, embedded):
    """Length-sorted batching must not reorder rows: compare with one plain `encode` call."""
    table = load_embeddings(embedded[0], "sst2-sentences", "packaged", checksum=subset.checksum())
    direct = load_sentence_model(resolve_model("packaged")).encode(subset.texts, batch_size=64)
    np.testing.assert_allclose(table.embeddings, direct, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(table.embeddings, axis=1), 1.0, atol=1e-5)
    assert table.ids.tolist() == subset.ids.tolist() and table.split.tolist() == subset.splits.tolist()
    assert np.array_equal(table.labels, subset.labels) and table.label_names == ("negative", "positive")
    assert (table.dimension, table.normalisation, table.embeddings_b) == (384, "l2", None)


def test_complete_shards_are_reused_not_recomputed(subset, shards_copy):
    mtimes = {path.name: path.stat().st_mtime_ns for path in shards_copy.iterdir()}
    again = embed_dataset(subset, out_dir=shards_copy, shard_size=SHARD_SIZE, progress=False)
    assert (again.computed, again.reused, again.sentences, again.load_seconds) == (0, 4, 0, 0.0)
    assert {path.name: path.stat().st_mtime_ns for path in shards_copy.iterdir()} == mtimes
    (shards_copy / NAMES[2]).unlink()
    (shards_copy / f".{NAMES[3]}.999.tmp").write_bytes(b"half a shard from a killed job")
    refill = embed_dataset(subset, out_dir=shards_copy, shard_size=SHARD_SIZE, progress=False)
    assert (refill.computed, refill.reused, refill.sentences) == (1, 3, 16)
    for name in (NAMES[0], NAMES[1], NAMES[3]):
        assert (shards_copy / name).stat().st_mtime_ns == mtimes[name]
    assert len(load_embeddings(shards_copy, "sst2-sentences", "packaged", subset.checksum())) == 64


def test_changed_data_is_re_embedded_and_stale_shards_refused(subset, shards_copy):
    flipped = TextDataset(
        subset.name,
        subset.texts,
        1 - subset.labels,
        subset.ids,
        subset.splits,
        label_names=subset.label_names,
    )
    with pytest.raises(DataError, match="embedded from other data.*re-embed with `hpcq embed"):
        load_embeddings(shards_copy, "sst2-sentences", "packaged", flipped.checksum())
    report = embed_dataset(flipped, out_dir=shards_copy, shard_size=SHARD_SIZE, progress=False)
    assert (report.computed, report.reused) == (4, 0)
    table = load_embeddings(shards_copy, "sst2-sentences", "packaged", flipped.checksum())
    assert np.array_equal(table.labels, 1 - subset.labels)


def sst2_root(folder: Path, rows: int) -> Path:
    """A data root whose sst2-sentences holds the first `rows` lines of each real split file."""
    (folder / "sst2-sentences").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        lines = (data_root() / "sst2-sentences" / f"stsa.binary.{split}").read_text(encoding="utf-8")
        lines = lines.splitlines()
        (folder / "sst2-sentences" / f"stsa.binary.{split}").write_text("\n".join(lines[:rows]) + "\n")
    return folder


def flip_labels(folder: Path) -> None:
    """Every `<label> <sentence>` line of the stsa.binary files in `folder` gets the other label, in place."""
    for path in folder.glob("stsa.binary.*"):
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("".join(f"{1 - int(line[0])}{line[1:]}\n" for line in lines), encoding="utf-8")


def test_train_re_embeds_when_the_data_changed_after_embedding(tmp_path, monkeypatch):
    """Issue 13, finding 1: with every label flipped and the old shards left in the embeddings folder,
    `hpcq train` read the old shards (old labels) and gave a bit-identical result. Now it embeds the data as
    it is."""
    root = sst2_root(tmp_path / "data", rows=8)
    monkeypatch.setenv("HPCQ_DATA", str(root))
    data = {"dataset": "sst2-sentences", "model": "packaged", "embeddings_dir": str(tmp_path / "embeddings")}
    before = load_or_embed(data, progress=False)
    flip_labels(root / "sst2-sentences")
    after = load_or_embed(data, progress=False)
    assert np.array_equal(after.labels, 1 - before.labels)
    assert after.checksum == load_sst2_sentences(root).checksum() != before.checksum


def test_shards_of_changed_weights_are_stale(subset, tmp_path):
    """A body retrained in place (same folder, other weights) is not read as the one that made the shards."""
    body = tmp_path / "body"
    shutil.copytree(packaged_model_path(), body, copy_function=os.symlink)
    rows, shards = subset.subset(slice(0, 8)), tmp_path / "shards"
    embed_dataset(rows, str(body), shards, shard_size=4, progress=False)
    old = load_embeddings(shards, "sst2-sentences", str(body), rows.checksum())
    weights = load_file(body / "model.safetensors")
    (body / "model.safetensors").unlink()
    save_file({name: tensor * 1.5 for name, tensor in weights.items()}, body / "model.safetensors")
    stale = (
        rf"^the shards of sst2-sentences in {shards} are stale: they were embedded from other weights of "
        rf"model '{body}' .*; re-embed with `hpcq embed --dataset sst2-sentences --model {body} --out-dir "
        rf"{shards}`$"
    )
    with pytest.raises(DataError, match=stale):
        load_embeddings(shards, "sst2-sentences", str(body), rows.checksum())
    report = embed_dataset(rows, str(body), shards, shard_size=4, progress=False)
    assert (report.computed, report.reused) == (2, 0)
    new = load_embeddings(shards, "sst2-sentences", str(body), rows.checksum())
    assert not np.allclose(new.embeddings, old.embeddings, atol=1e-3)


def hub_snapshot(cache: Path, repo: str, commit: str) -> None:
    """A Hugging Face cache entry of Hub model `repo` at `commit` (made `main`) with the packaged files."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(packaged_model_path(), entry / "snapshots" / commit, copy_function=os.symlink)
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(commit)


def test_hub_model_shards_are_keyed_by_the_snapshot_commit(tmp_path, monkeypatch):
    """A Hub name's weights change with its revision: shards record the cached snapshot's commit, and a newer
    revision in the cache makes them stale. Offline, from a Hugging Face cache built here."""
    root, cache, shards, repo = sst2_root(tmp_path / "data", rows=4), tmp_path / "hub", tmp_path / "out", "t/m"
    hub_snapshot(cache, repo, "1" * 40)
    env = {**os.environ, "HPCQ_DATA": str(root), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}

    def embed() -> dict:
        command = [sys.executable, "-m", "hpcq", "embed", "--model", repo, "--out-dir", str(shards), "--json"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout)

    assert (embed()["computed"], embed()["reused"]) == (1, 1)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    checksum = load_sst2_sentences(root).checksum()
    assert len(load_embeddings(shards, "sst2-sentences", repo, checksum)) == 12
    hub_snapshot(cache, repo, "2" * 40)  # a newer revision fetched since
    stale = rf"embedded from other weights of model '{repo}' \(body \['commit:1{{40}}'\], now commit:2"
    with pytest.raises(DataError, match=stale):
        load_embeddings(shards, "sst2-sentences", repo, checksum)
    assert embed()["computed"] == 1
    assert len(load_embeddings(shards, "sst2-sentences", repo, checksum)) == 12
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DataError, match=rf"model '{repo}' is not in the Hugging Face cache here.*hpcq embed"):
        load_embeddings(shards, "sst2-sentences", repo, checksum)


def test_shards_of_another_model_are_refused(subset, shards_copy, tmp_path):
    other = tmp_path / "minilm-finetuned"
    shutil.copytree(packaged_model_path(), other, copy_function=os.symlink)
    with pytest.raises(DataError) as err:
        load_embeddings(shards_copy, "sst2-sentences", str(other), subset.checksum())
    message = str(err.value)
    assert resolve_model("packaged").model_id in message and str(other) in message
    assert f"hpcq embed --dataset sst2-sentences --model {other} --out-dir {shards_copy}" in message


def test_missing_shard_and_missing_folder(subset, shards_copy, tmp_path):
    (shards_copy / NAMES[1]).unlink()
    with pytest.raises(DataError, match=r"incomplete: shard\(s\) \[1\] of 4 are missing.*hpcq embed"):
        load_embeddings(shards_copy, "sst2-sentences", "packaged", subset.checksum())
    with pytest.raises(DataError, match="no shards for data set glue/RTE"):
        load_embeddings(shards_copy, "glue/RTE", "packaged", subset.checksum())
    with pytest.raises(DataError, match="does not exist"):
        load_embeddings(tmp_path / "nowhere", "sst2-sentences", "packaged", subset.checksum())


def test_pair_task_embeds_both_sentences(tmp_path):
    rte = load_glue("RTE", data_root(), splits=["dev"]).subset(slice(0, 6))
    report = embed_dataset(rte, out_dir=tmp_path, shard_size=4, progress=False)
    assert (report.computed, report.sentences) == (2, 12)
    table = load_embeddings(tmp_path, "glue/RTE", "packaged", rte.checksum())
    assert table.embeddings.shape == table.embeddings_b.shape == (6, 384)
    assert not np.allclose(table.embeddings, table.embeddings_b)


MPI_SCRIPT = f"""
import json, sys
import numpy as np
from hpcq.data import data_root, embed_dataset, load_sst2_sentences
from hpcq.runtime import mpi_world
data = load_sst2_sentences(data_root()).subset({ROWS})
report = embed_dataset(data, out_dir=sys.argv[1], shard_size={SHARD_SIZE}, batch_size=8, progress=False)
print(json.dumps({{"rank": mpi_world().rank, **report.as_dict()}}))
"""


def mpiexec(ranks: int) -> list[str]:
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpiexec", "-n", str(ranks), "--oversubscribe", *root]


@pytest.mark.mpi
@pytest.mark.slow
def test_two_ranks_embed_the_same_as_one(subset, embedded, tmp_path):
    out = tmp_path / "mpi"
    result = subprocess.run(
        [*mpiexec(2), sys.executable, "-c", MPI_SCRIPT, str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted((json.loads(line) for line in result.stdout.splitlines()), key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1]
    # every rank reports the job's totals; shard i was written by rank i % 2
    assert all((r["ranks"], r["computed"], r["reused"], r["sentences"]) == (2, 4, 0, 64) for r in reports)
    assert sorted(path.name for path in out.iterdir()) == NAMES
    for index, name in enumerate(NAMES):
        with h5py.File(out / name) as shard:
            assert shard.attrs["written_by_rank"] == index % 2
    two = load_embeddings(out, "sst2-sentences", "packaged", subset.checksum())
    one = load_embeddings(embedded[0], "sst2-sentences", "packaged", subset.checksum())
    np.testing.assert_allclose(two.embeddings, one.embeddings, rtol=0, atol=1e-5)
    assert two.ids.tolist() == one.ids.tolist()
