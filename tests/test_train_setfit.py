"""`hpcq train` for task "setfit" with the real packaged MiniLM on 260 real SST-2 sentences (the paper's
protocol scaled down to 40 per class), on a tiny SetFit budget: the body phase never learns from a test row
(the test rows are poisoned with words no other row has, and their embedding rows must come out only scaled by
weight decay), and a run killed in or after the body phase resumes to the unbroken run's result."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from hpcq.data import data_root, load_sst2_sentences, paper_split
from hpcq.data.sentence_model import load_sentence_model, resolve_model
from hpcq.errors import ConfigError
from hpcq.results import read_run
from hpcq.train.config import load_config
from hpcq.train.setfit import BODY_RECORD, setfit_folder, train_setfit

pytest.importorskip("setfit", reason='task setfit needs the setfit extra: pip install "hpcq[setfit]"')

ROWS = np.arange(0, 9613, 37)[:260]  # 116 negative, 144 positive; spread over train, dev and test files
SMALL = {
    "task": "setfit",
    "seed": 0,
    "data": {"per_class": 40},
    "model": {"kind": "logreg"},
    # One thread: the same sums in every process, so an in-process run and a resumed subprocess tune alike.
    "setfit": {"num_iterations": 1, "max_steps": 3, "batch_size": 8, "body_lr": 1e-3, "max_length": 32,
               "threads": 1},
    "train": {"threads": 1},
}
WORDS = "embeddings.word_embeddings.weight"


def _write_sst2(root: Path, labels, texts, splits) -> None:
    """An sst2-sentences folder holding these rows, each in its split's file, in this order."""
    (root / "sst2-sentences").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        rows = [f"{label} {text}\n" for label, text, name in zip(labels, texts, splits) if name == split]
        (root / "sst2-sentences" / f"stsa.binary.{split}").write_text("".join(rows), encoding="utf-8")


def _unseen_words(texts: list[str], count: int) -> list[str]:
    """Whole-word vocabulary entries of the packaged tokenizer that no text in `texts` tokenizes to."""
    tokenizer = load_sentence_model(resolve_model("packaged")).tokenizer
    seen = {token for text in texts for token in tokenizer(text)["input_ids"]}
    vocab = tokenizer.get_vocab()
    words = [word for word in sorted(vocab) if word.isalpha() and len(word) > 6 and vocab[word] not in seen]
    return words[:count]


@pytest.fixture(scope="module")
def poisoned_root(tmp_path_factory):
    """HPCQ_DATA with the 260 sentences where every row the seed-0 paper split tests on says only words that
    no training or validation row has (the split depends on the labels alone, which are kept)."""
    subset = load_sst2_sentences(data_root()).subset(ROWS)
    split = paper_split(np.asarray(subset.labels), 0, SMALL["data"]["per_class"], 0.15)
    seen = [subset.texts[i] for i in np.concatenate([split.train, split.validation])]
    words = _unseen_words(seen, 6)
    texts = list(subset.texts)
    for n, row in enumerate(split.test):
        texts[row] = " ".join(words[(n + k) % len(words)] for k in range(3))
    root = tmp_path_factory.mktemp("poisoned")
    _write_sst2(root, subset.labels, texts, subset.splits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPCQ_DATA", str(root))
        yield root, words


def _config_file(folder: Path, **sections) -> Path:
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in SMALL.items()}
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _rows_moved(base: np.ndarray, tuned: np.ndarray) -> np.ndarray:
    """Per row, how far the tuned row is from the base row times the best scale (AdamW's weight decay shrinks
    every row, also those no gradient reached), relative to the row's norm."""
    scale = (base * tuned).sum(axis=1) / (base * base).sum(axis=1)
    return np.linalg.norm(tuned - scale[:, None] * base, axis=1) / np.linalg.norm(base, axis=1)


def test_the_body_phase_never_learns_from_a_test_row(poisoned_root, tmp_path):
    root, words = poisoned_root
    config = load_config(_config_file(tmp_path))
    run = read_run(train_setfit(config, tmp_path / "run.h5", progress=False))
    assert (run.final["train_size"], run.final["val_size"], run.final["test_size"]) == (68, 12, 180)
    body = run.extra["body"]
    assert body["phase"] == "tuned" and body["train_rows"] == 68 and body["steps"] == 3
    assert body["base_model"] == "packaged" and body["weights_sha256"] != body["base_weights_sha256"]
    assert {"body_s", "embed_s", "head_s"} <= set(run.timing)
    assert run.timing["total_s"] == pytest.approx(run.timing["body_s"] + run.timing["embed_s"]
                                                  + run.timing["head_s"])

    base = load_file(Path(resolve_model("packaged").location) / "model.safetensors")[WORDS]
    tuned = load_file(Path(body["model"]) / "model.safetensors")[WORDS]
    tokenizer = load_sentence_model(resolve_model("packaged")).tokenizer
    poison = [tokenizer.get_vocab()[word] for word in words]
    # In every sentence of every pair (a 3-step budget samples only some of the training sentences).
    trained = [tokenizer.cls_token_id, tokenizer.sep_token_id]
    moved = _rows_moved(base, tuned)
    assert moved[poison].max() < 1e-5, "a word that only test rows hold was learnt from"
    assert moved[trained].min() > 1e-3, "the body phase did not train (the check above would prove nothing)"
    assert not (setfit_folder(tmp_path / "run.h5") / "embeddings").exists()  # the tuned body stays, shards go


def _hpcq(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpcq", *args]


def _kill_when(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 300
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert ready(), f"the run ended before {what}"


def test_a_run_killed_in_and_after_the_body_phase_resumes_to_the_same_result(poisoned_root, tmp_path):
    config_file = _config_file(tmp_path, model={"kind": "mlp", "hidden": [8]},
                               train={"epochs": 3, "dtype": "float64"})
    unbroken = read_run(train_setfit(load_config(config_file), tmp_path / "unbroken.h5", progress=False))

    out = tmp_path / "killed.h5"
    work, record = setfit_folder(out), setfit_folder(out) / BODY_RECORD
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    first = subprocess.Popen(_hpcq("train", "--config", str(config_file), "--out", str(out)), **quiet)
    _kill_when(first, work.exists, "its body phase began")
    assert not record.exists() and not out.exists()  # killed inside the body phase

    resume = _hpcq("train", "--config", str(config_file), "--out", str(out), "--resume")
    second = subprocess.Popen(resume, **quiet)
    _kill_when(second, record.exists, "its body phase ended")
    assert not out.exists(), "the run finished before it could be killed after the body phase"
    tuned = record.read_text()

    subprocess.run(resume, check=True, **quiet)
    resumed = read_run(out)
    assert record.read_text() == tuned  # the body was read back, not tuned again
    assert resumed.extra["body"]["phase"] == "resumed"
    assert resumed.extra["body"]["weights_sha256"] == unbroken.extra["body"]["weights_sha256"]
    assert resumed.timing["body_s"] == json.loads(tuned)["body"]["seconds"]
    for key in ("val_accuracy", "test_accuracy", "best_epoch", "epochs_run", "test_size"):
        assert resumed.final[key] == unbroken.final[key], key
    for name, value in unbroken.extra["weights"].items():
        assert np.array_equal(resumed.extra["weights"][name], value), name


def test_shared_bodies_that_cannot_be_written_fail_before_the_body_phase(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = load_config(_config_file(tmp_path, setfit={"shared_bodies": str(blocker / "bodies")}))
    with pytest.raises(ConfigError, match=r"setfit\.shared_bodies .*a-file is a file, not a folder"):
        train_setfit(config, tmp_path / "run.h5", progress=False)
    assert not setfit_folder(tmp_path / "run.h5").exists()


def test_the_setfit_section_is_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"setfit\.num_iterations.*--set setfit\.num_iterations="):
        load_config(_config_file(tmp_path), ["setfit.num_iterations=0"])
    with pytest.raises(ConfigError, match="setfit"):  # a head run has no setfit section
        load_config(_config_file(tmp_path), ["task=head"])
    config = load_config(None, ["task=setfit"])
    assert config["setfit"]["num_iterations"] == 5 and config["model"]["kind"] == "quantum"


def test_runs_that_differ_in_their_head_share_one_tuned_body(poisoned_root, tmp_path):
    shared = tmp_path / "bodies"
    config_file = _config_file(tmp_path, setfit={"shared_bodies": str(shared)})
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    heads = {kind: tmp_path / f"{kind}.h5" for kind in ("logreg", "svc")}
    started = [subprocess.Popen(_hpcq("train", "--config", str(config_file), "--set", f"model.kind={kind}",
                                      "--out", str(out)), **quiet) for kind, out in heads.items()]
    assert [run.wait(timeout=600) for run in started] == [0, 0]
    bodies = [read_run(out).extra["body"] for out in heads.values()]
    assert sorted(body["phase"] for body in bodies) == ["shared", "tuned"]  # one body phase, not two
    assert bodies[0]["weights_sha256"] == bodies[1]["weights_sha256"] and bodies[0]["model"] == bodies[1]["model"]
    assert [p.name for p in shared.iterdir() if p.is_dir()] == [Path(bodies[0]["model"]).parent.name]
    assert not any(setfit_folder(out).exists() for out in heads.values())

    other_seed = read_run(train_setfit(load_config(config_file, ["seed=1"]), tmp_path / "seed1.h5", progress=False))
    assert other_seed.extra["body"]["phase"] == "tuned"
    assert Path(other_seed.extra["body"]["model"]).parent != Path(bodies[0]["model"]).parent
