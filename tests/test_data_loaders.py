"""Loaders on the real staged data (counts from the data READMEs) and their clear errors on corrupted
copies."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hpcq.data import UNLABELLED, data_root, load_dataset, load_glue, load_setfit_sst2, load_sst2_sentences
from hpcq.errors import DataError

SHARED_DATA = data_root()  # conftest points HPCQ_DATA at the shared data copy


def split_counts(data):
    return {split: int((data.splits == split).sum()) for split in ("train", "dev", "test")}


def label_counts(data, split):
    rows = data.splits == split
    return {int(label): int(n) for label, n in zip(*np.unique(data.labels[rows], return_counts=True))}


def test_data_root_follows_hpcq_data(monkeypatch, tmp_path):
    monkeypatch.setenv("HPCQ_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("HPCQ_DATA")
    assert str(data_root()) == "data"


def test_sst2_sentences_counts_labels_and_ids():
    data = load_sst2_sentences(SHARED_DATA)
    assert len(data) == 9613
    assert split_counts(data) == {"train": 6920, "dev": 872, "test": 1821}
    assert label_counts(data, "train") == {0: 3310, 1: 3610}
    assert label_counts(data, "dev") == {0: 428, 1: 444}
    assert label_counts(data, "test") == {0: 912, 1: 909}
    assert data.labels.dtype == np.int64 and not data.is_pair
    assert data.ids[0] == "train-000000" and data.ids[6920] == "dev-000000" and len(set(data.ids)) == 9613
    assert data.texts[0].startswith("a stirring , funny and finally transporting re-imagining")
    # split at the first space only: the no-break spaces of `2 1\/2` stay inside the sentences
    assert sum("\u00a0" in text for text in data.texts) == 3
    assert load_dataset("sst2-sentences", SHARED_DATA, splits=["dev"]).texts == data.texts[6920:7792]


@pytest.mark.parametrize(
    "task, counts, train_labels, dev_labels",
    [
        ("SST-2", (67349, 872, 1821), {0: 29780, 1: 37569}, {0: 428, 1: 444}),
        ("CoLA", (8551, 1043, 1063), {0: 2528, 1: 6023}, {0: 322, 1: 721}),
        ("MRPC", (3668, 408, 1725), {0: 1194, 1: 2474}, {0: 129, 1: 279}),
        ("RTE", (2490, 277, 3000), {0: 1249, 1: 1241}, {0: 146, 1: 131}),
    ],
)
def test_glue_classification_counts(task, counts, train_labels, dev_labels):
    data = load_glue(task, SHARED_DATA)
    assert tuple(split_counts(data).values()) == counts
    assert label_counts(data, "train") == train_labels
    assert label_counts(data, "dev") == dev_labels
    assert (data.labels[data.splits == "test"] == UNLABELLED).all()
    assert data.is_pair == (task in ("MRPC", "RTE"))


def test_glue_quirks():
    mrpc = load_glue("MRPC", SHARED_DATA, splits=["train"])
    assert mrpc.texts[0].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert mrpc.texts_b[0].startswith('Referring to him as only " the witness "')
    rte = load_glue("RTE", SHARED_DATA, splits=["train"])
    assert rte.label_names == ("entailment", "not_entailment") and rte.labels[0] == 1  # not_entailment
    cola = load_glue("CoLA", SHARED_DATA, splits=["dev"])
    assert cola.texts[-1] and len(cola) == 1043  # dev.tsv has no newline after its last row
    sst2 = load_glue("SST-2", SHARED_DATA, splits=["dev"])
    assert sst2.texts[0] == "it 's a charming and often affecting journey . "  # GLUE's trailing space kept


def test_stsb_scores():
    data = load_glue("STS-B", SHARED_DATA)
    assert tuple(split_counts(data).values()) == (5749, 1500, 1379)
    assert data.labels.dtype == np.float32 and data.label_names is None and data.is_pair
    labelled = data.labels[data.splits != "test"]
    assert labelled.min() == 0.0 and labelled.max() == 5.0 and not np.isnan(labelled).any()
    assert np.isnan(data.labels[data.splits == "test"]).all()
    assert data.texts[0] == "A plane is taking off." and data.texts_b[0] == "An air plane is taking off."


def test_setfit_sst2_from_a_local_snapshot(tmp_path):
    """The Hub layout (`{train,dev,test}.jsonl` with text/label/label_text), read from a local folder."""
    staged = load_sst2_sentences(SHARED_DATA)
    for split in ("train", "dev", "test"):
        rows = staged.splits == split
        with (tmp_path / f"{split}.jsonl").open("w") as handle:
            for text, label in zip(np.asarray(staged.texts)[rows], staged.labels[rows]):
                record = {"text": text, "label": int(label), "label_text": staged.label_names[label]}
                handle.write(json.dumps(record) + "\n")
    data = load_setfit_sst2(tmp_path)
    assert data.name == "SetFit/sst2" and split_counts(data) == split_counts(staged)
    assert data.texts == staged.texts and (data.labels == staged.labels).all()


def test_setfit_sst2_offline_says_to_use_the_staged_copy(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="sst2-sentences"):
        load_dataset("SetFit/sst2")


# --- clear errors, on corrupted copies of the real files ---------------------------------------------------


@pytest.fixture
def data_copy(tmp_path):
    """A writable copy of sst2-sentences and glue/{RTE,STS-B,CoLA} under tmp_path."""
    for name in ("sst2-sentences", "glue/RTE", "glue/STS-B", "glue/CoLA"):
        shutil.copytree(SHARED_DATA / name, tmp_path / name)
    for path in tmp_path.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tmp_path


def replace_line(path, line_no, new_line):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line_no - 1] = new_line
    path.write_text("\n".join(lines), encoding="utf-8")


def test_missing_data_set_names_path_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("sst2-sentences", tmp_path)
    assert str(tmp_path / "sst2-sentences") in str(err.value)
    assert "HPCQ_DATA" in str(err.value) and "hpcq stage" in str(err.value)


def test_missing_data_file(data_copy):
    (data_copy / "sst2-sentences" / "stsa.binary.dev").unlink()
    with pytest.raises(DataError, match=r"stsa\.binary\.dev is missing.*hpcq stage"):
        load_sst2_sentences(data_copy)
    (data_copy / "glue" / "RTE" / "test.tsv").unlink()
    with pytest.raises(DataError, match=r"RTE/test\.tsv is missing"):
        load_glue("RTE", data_copy)


def test_empty_sst2_split_is_refused_not_dropped(data_copy):
    """An empty stsa.binary.test used to load as 7,792 rows with the test split gone and no word."""
    path = data_copy / "sst2-sentences" / "stsa.binary.test"
    path.write_text("", encoding="utf-8")
    empty = rf"^data file {path} holds no data rows, so split 'test' would be empty; re-stage .*`hpcq stage"
    with pytest.raises(DataError, match=empty):
        load_sst2_sentences(data_copy)


@pytest.mark.parametrize("content", ["", "index\tsentence1\tsentence2\tlabel\n"], ids=["empty", "header"])
def test_glue_split_without_rows_is_refused(data_copy, content):
    path = data_copy / "glue" / "RTE" / "dev.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^data file {path} holds no data rows, so split 'dev' would be"):
        load_glue("RTE", data_copy)


def test_malformed_sst2_row_names_file_and_line(data_copy):
    path = data_copy / "sst2-sentences" / "stsa.binary.train"
    replace_line(path, 17, "1")
    with pytest.raises(DataError) as err:
        load_sst2_sentences(data_copy)
    assert f"{path}:17: malformed row: expected '<label> <sentence>'" in str(err.value)


def test_sst2_label_outside_the_set(data_copy):
    path = data_copy / "sst2-sentences" / "stsa.binary.test"
    replace_line(path, 5, "2 a fine film .")
    with pytest.raises(DataError, match=rf"{path}:5: label '2' is not one of SST-2's labels \['0', '1'\]"):
        load_sst2_sentences(data_copy)


def test_malformed_glue_row_counts_fields(data_copy):
    path = data_copy / "glue" / "RTE" / "dev.tsv"
    replace_line(path, 4, "2\tonly one sentence here")
    with pytest.raises(
        DataError, match=rf"{path}:4: malformed row: expected 4 tab-separated fields.*found 2"
    ):
        load_glue("RTE", data_copy)


def test_wrong_glue_header(data_copy):
    path = data_copy / "glue" / "STS-B" / "train.tsv"
    replace_line(path, 1, "index\tsentence1\tsentence2\tscore")
    with pytest.raises(DataError, match=rf"{path}:1: malformed row: expected the header"):
        load_glue("STS-B", data_copy)


@pytest.mark.parametrize(
    "task, file, line, row, message",
    [
        (
            "RTE",
            "train.tsv",
            2,
            "0\tA man sleeps.\tA man rests.\tmaybe",
            r"label 'maybe' is not one of RTE's",
        ),
        ("CoLA", "train.tsv", 3, "gj04\t3\t\tThe cat sat.", r"label '3' is not one of CoLA's labels"),
        ("STS-B", "dev.tsv", 2, "0\tg\tf\ty\t0\tn\tn\tA.\tB.\t7.5", r"score 7\.5 is outside \[0\.0, 5\.0\]"),
        ("STS-B", "dev.tsv", 2, "0\tg\tf\ty\t0\tn\tn\tA.\tB.\thigh", r"expected a number in column 'score'"),
    ],
)
def test_glue_labels_outside_the_task_set(data_copy, task, file, line, row, message):
    path = data_copy / "glue" / task / file
    replace_line(path, line, row)
    with pytest.raises(DataError, match=rf"{path}:{line}: .*{message}"):
        load_glue(task, data_copy)


def test_unknown_names():
    with pytest.raises(DataError, match="unknown data set 'sst5'.*sst2-sentences"):
        load_dataset("sst5")
    with pytest.raises(DataError, match="unknown GLUE task 'QQP'"):
        load_glue("QQP")
    with pytest.raises(DataError, match=r"unknown SST-2 split\(s\) \['validation'\]"):
        load_sst2_sentences(SHARED_DATA, splits=["validation"])


def test_cli_prints_one_clear_line_for_missing_data(tmp_path):
    env = {**os.environ, "HPCQ_DATA": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "hpcq", "embed", "--dataset", "glue/RTE"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"data set 'glue/RTE' not found: {tmp_path}/glue/RTE is not a folder" in result.stderr
    assert "Traceback" not in result.stderr
