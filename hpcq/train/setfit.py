"""`hpcq train` for task "setfit": the seed paper's body, tuned the way its was, under any head of task head.

    the run's split (task head's: the paper's protocol or the shipped splits) → body phase: SetFit's
    contrastive pairs over the TRAINING rows only tune `data.model` (the `setfit` library; seeded by the run's
    seed) → the tuned body saved as safetensors in OUT.setfit/body with its SHA-256 → every sentence
    re-embedded with it → the configured head (quantum, mlp, mlp_matched, logreg, svc) trained on those
    embeddings exactly as task head trains on any embeddings (validation selects, test is only scored) → one
    run file.

The body phase is SetFit's first phase (`Trainer.train_embeddings`); its second phase (a logistic head) is not
run, because the configured head takes its place. The body phase never receives anything but the training
rows: `tune_body` is handed a data set that holds only them.

Resuming: the body phase ends by writing OUT.setfit/body.json (the config, the body's hashes, what the phase
cost) after the body folder is complete, so a run killed after it resumes with `--resume` from the saved body
without re-tuning; a run killed inside it tunes again from the start (seeded, so to the same body). Shards of
the re-embedding are keyed by the body's files and reused when they match, and the head resumes from OUT.ckpt
as in task head.

Sharing: runs that differ only in their head tune the same body (the body phase sees only the base body, the
`setfit` section, the seed and the training rows). With `setfit.shared_bodies: DIR` the body and its
re-embedded shards live in DIR/<base>-seed<seed>-<key>, where the key hashes exactly those inputs (the base
weights' and the training rows' content included), and every run with that key uses them: the first tunes
while holding a lock on the folder, the others wait and read what it saved. A study of five heads on one
SetFit body so pays for one body phase per seed, and its quantum-minus-classical pairs share one body.

Result: task head's groups; timing/ adds body_s (tuning; the original phase's seconds when resumed), embed_s
and head_s, and total_s is their sum; body/ names the tuned body (`model` = its folder, `weights_sha256`,
`checksum`), the body it started from (`base_model`, `base_model_id`, `base_weights_sha256`) and the phase
(`phase` tuned, resumed or shared, `steps`, `pairs`, `train_rows`, `train_loss`). The tuned body stays in
OUT.setfit/body (another run can use it as `data.model`); the re-embedded shards go to data.embeddings_dir
when it is set, else next to the body, from where they are removed with the result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from hpcq.data import TextDataset, embed_dataset, load_dataset
from hpcq.data.fingerprint import folder_checksum
from hpcq.data.sentence_model import load_sentence_model, resolve_model, weights_sha256
from hpcq.data.stage import file_sha256
from hpcq.errors import ConfigError, MissingDependencyError
from hpcq.models.sklearn_heads import SKLEARN_KINDS
from hpcq.outputs import check_output_folder, writing
from hpcq.results.schema import config_to_json
from hpcq.runtime import mpi_world
from hpcq.sim.precision import DTYPES
from hpcq.train.head import load_head_data, run_split, train_sklearn_head, train_torch_head

BODY = "body"
BODY_RECORD = "body.json"
EMBEDDINGS = "embeddings"


# The setfit options that change the tuned body; threads, the re-embedding batch and where bodies are shared do
# not (one thread and two threads sum in another order, which moves the body's weights by rounding only).
BODY_OPTIONS = ("num_iterations", "max_steps", "epochs", "batch_size", "body_lr", "max_length")


def setfit_folder(out: Path) -> Path:
    """Where the run writing `out` keeps its tuned body and re-embedded shards: OUT.setfit/."""
    return out.with_name(out.name + ".setfit")


def body_inputs(config: dict, base_weights: str | None, train: TextDataset) -> dict:
    """Everything the body phase of `config` reads: two runs with equal inputs tune the same body."""
    rows = hashlib.sha256()
    for label, text in zip(train.labels, train.texts):
        rows.update(f"{int(label)}\t{text}\n".encode())
    return {"base_model": config["data"]["model"], "base_weights_sha256": base_weights, "seed": config["seed"],
            "setfit": {key: config["setfit"][key] for key in BODY_OPTIONS}, "train_rows_sha256": rows.hexdigest()}


def shared_body_folder(shared: str | Path, inputs: dict) -> Path:
    """The folder under `setfit.shared_bodies` of the body that `inputs` tune."""
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(inputs["base_model"]).name)
    return Path(shared) / f"{base}-seed{inputs['seed']}-{key}"


@contextmanager
def holding(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder`'s lock file, so that runs sharing a body tune it once: the others wait."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class BodyPhase:
    """What the body phase left: the tuned body's folder and hashes, and what the phase did and cost."""

    folder: str
    weights_sha256: str
    checksum: str
    seconds: float
    steps: int
    pairs: int
    train_rows: int
    train_loss: float | None
    phase: str = "tuned"  # "resumed" (this run's, read back from body.json) or "shared" (another run's)


def _plain_config(config: dict) -> dict:
    return json.loads(config_to_json(config))  # as the run file and body.json store it


def _import_setfit() -> Any:
    try:
        import setfit
    except ImportError as err:
        raise MissingDependencyError("setfit", "setfit", "task setfit (contrastive body tuning)") from err
    return setfit


def tune_body(config: dict, inputs: dict, train: TextDataset, work: Path, progress: bool = True) -> BodyPhase:
    """SetFit's contrastive body phase on `train` (the run's training rows, and nothing else), seeded by the
    run's seed; the tuned body is saved to `work/body` (safetensors) and recorded in `work/body.json`."""
    setfit = _import_setfit()
    from sklearn.linear_model import LogisticRegression
    from transformers.trainer_callback import ProgressCallback

    options = config["setfit"]
    started = time.perf_counter()
    body = load_sentence_model(resolve_model(config["data"]["model"]))
    if options["max_length"] is not None:
        body.max_seq_length = options["max_length"]  # saved with the body, so re-embedding uses it too
    args = setfit.TrainingArguments(
        output_dir=str(work / "trainer"), batch_size=options["batch_size"], num_epochs=options["epochs"],
        max_steps=options["max_steps"] or -1, num_iterations=options["num_iterations"],
        body_learning_rate=options["body_lr"], seed=config["seed"], report_to="none", save_strategy="no",
        show_progress_bar=progress)
    # The head here is a placeholder that SetFitModel requires; only the body phase runs, and the run's own
    # head is trained on the re-embedded sentences afterwards.
    model = setfit.SetFitModel(model_body=body, model_head=LogisticRegression())
    trainer = setfit.Trainer(model=model, args=args)  # seeds python, numpy and torch (pair sampling, dropout)
    trainer.st_trainer.args.dataloader_pin_memory = False  # CPU runs: no pinned memory, no warning about it
    if not progress:
        trainer.st_trainer.remove_callback(ProgressCallback)
    labels = [int(label) for label in train.labels]
    trainer.train_embeddings(list(train.texts), labels, args=args)
    state = trainer.st_trainer.state
    losses = [entry["train_loss"] for entry in state.log_history if "train_loss" in entry]

    folder = work / BODY
    staging = work / f".{BODY}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    body.save(str(staging), create_model_card=False, safe_serialization=True)  # a card would carry dates
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)  # the folder appears whole; body.json, written after it, marks the phase done
    shutil.rmtree(work / "trainer", ignore_errors=True)
    record = BodyPhase(str(folder.resolve()), file_sha256(folder / "model.safetensors"),
                       folder_checksum(folder), time.perf_counter() - started, int(state.global_step),
                       len(trainer.st_trainer.train_dataset), len(train), losses[-1] if losses else None)
    with writing(work / BODY_RECORD, "SetFit body record") as tmp:
        tmp.write_text(json.dumps({"inputs": inputs, "config": _plain_config(config), "body": asdict(record)},
                                  indent=1))
    return record


def saved_body(work: Path, inputs: dict) -> BodyPhase | None:
    """The body phase saved in `work` by an earlier process, or None when there is none, it tuned from other
    inputs, or its weights are no longer the ones it recorded."""
    try:
        saved = json.loads((work / BODY_RECORD).read_text())
        record = BodyPhase(**{**saved["body"], "phase": "resumed"})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if saved.get("inputs") != inputs:
        return None
    weights = Path(record.folder) / "model.safetensors"
    if not weights.is_file() or file_sha256(weights) != record.weights_sha256:
        return None
    return record


def train_setfit(config: dict, out: str | Path, resume: bool = False, progress: bool = True) -> Path | None:
    """Run one SetFit run (body phase, re-embedding, head) described by a validated run config and write its
    result to `out`; returns the path."""
    out = Path(out)
    world = mpi_world()
    if world.size > 1:
        raise ConfigError(f"task setfit runs on one rank (the body phase is not data parallel), but "
                          f"{world.size} were started; run it without mpiexec/srun, and several runs side by "
                          "side instead")
    # The body phase is large matrix products that use every core; a small quantum head runs faster on one
    # thread (config/runs/quantum_head.yaml), so each phase has its own setting.
    shared = config["setfit"]["shared_bodies"]
    if shared:  # before the body phase, not after it: a body that cannot be kept is an hour lost
        check_output_folder(Path(shared), "setfit.shared_bodies")
    default_threads = torch.get_num_threads()
    torch.set_num_threads(config["setfit"]["threads"] or default_threads)
    data = config["data"]
    dataset = load_dataset(data["dataset"])
    if dataset.is_pair:
        raise ConfigError(f"data.dataset={data['dataset']!r} is a sentence-pair task; task setfit tunes a "
                          "body on single sentences (sst2-sentences, glue/SST-2, glue/CoLA)")
    split = run_split(config, np.asarray(dataset.labels), dataset.splits)
    base = resolve_model(data["model"])
    train = dataset.subset(split.train)
    inputs = body_inputs(config, weights_sha256(base), train)
    work = shared_body_folder(shared, inputs) if shared else setfit_folder(out)
    # data.embeddings_dir, when set, takes the tuned body's shards (keyed by its files, so they never pass for
    # another body's); by default they go next to the body, and for a body of this run alone they are removed
    # with the result.
    shards = Path(data["embeddings_dir"]) if data["embeddings_dir"] else work / EMBEDDINGS
    with holding(work) if shared else nullcontext():
        body = saved_body(work, inputs) if resume or shared else None
        if body is not None and shared:
            body.phase = "shared"  # tuned by whichever run with these inputs came first
        if body is None:
            shutil.rmtree(work, ignore_errors=True)  # other inputs' or an unfinished phase's leftovers
            work.mkdir(parents=True)
            body = tune_body(config, inputs, train, work, progress)
        started = time.perf_counter()
        embed_dataset(dataset, body.folder, shards, batch_size=config["setfit"]["embed_batch_size"],
                      progress=progress)
        embed_seconds = time.perf_counter() - started
    tuned = {**config, "data": {**data, "model": body.folder, "embeddings_dir": str(shards)}}
    head_data = load_head_data(tuned, DTYPES[config["train"]["dtype"]], progress)
    head_data.body = {**head_data.body, "base_model": data["model"], "base_model_id": base.model_id,
                      "base_weights_sha256": inputs["base_weights_sha256"], "phase": body.phase,
                      "steps": body.steps, "pairs": body.pairs, "train_rows": body.train_rows,
                      "train_loss": body.train_loss}
    head_data.phases = {"body_s": body.seconds, "embed_s": embed_seconds}
    torch.set_num_threads(config["train"]["threads"] or default_threads)
    if config["model"]["kind"] in SKLEARN_KINDS:
        path = train_sklearn_head(config, head_data, out)
    else:
        path = train_torch_head(config, head_data, out, resume, world, progress)
    if not data["embeddings_dir"] and not shared:
        shutil.rmtree(shards, ignore_errors=True)  # the result is whole; the kept body makes them again
    return path

