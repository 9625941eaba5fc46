"""`hpcq train` for task "joint": the seed paper's quantum head on a sentence-transformer body that is trained
with it, end to end: QuanTA adapters in the body (or LoRA, full fine-tuning, or a frozen body, as in task glue).
The paper names an unfrozen body as future work; QuanTA makes it cheap.

    sentences → the paper's split (hpcq.data.paper_split) → token rows → JointModel: the sentence transformer's
    own modules (adapted by hpcq.adapters.methods; mean pooling and normalisation as when embedding) → head →
    AdamW (head at train.lr, body at train.body_lr), early stopping on validation accuracy, a checkpoint every
    epoch, MPI data parallel (hpcq.train.loop's fit_epochs and fit_and_test) → test → one run file.

At initialisation the body computes exactly the frozen embeddings of `hpcq embed` (QuanTA's update starts at
zero), and with `method: frozen` the run is the frozen-body head of task head with embeddings made on the fly.

Result groups: as task head's (metrics/ per-epoch curves and per-step step_loss; final/ val_accuracy,
test_accuracy, sizes, n_trainable_params, best_epoch, epochs_run, stopped_early; timing/; energy/; model/
parameter counts; weights/ the selected model's trainable tensors, QuanTA's θ0 and the head's buffers), plus
final/adapter_params, head_params, total_params and quanta_axes or lora_rank.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hpcq.adapters.methods import AdaptedModel, adapt_model
from hpcq.adapters.targets import find_modules
from hpcq.data import load_dataset, paper_split
from hpcq.data.sentence_model import load_sentence_model, resolve_model
from hpcq.errors import DataError
from hpcq.models import build_head
from hpcq.runtime import mpi_world
from hpcq.sim.precision import DTYPES
from hpcq.train.checkpoint import checkpoint_path
from hpcq.train.dataparallel import barrier
from hpcq.train.glue import adamw_with_head_rate
from hpcq.train.loop import Split, fit_and_test, fit_epochs

HEAD = "head"  # the head's module name in JointModel, trained by every method


class SentenceEncoder(nn.Module):
    """Token rows [n, 2, max_length] (input ids, attention mask) → sentence embeddings [n, hidden] through the
    sentence transformer's own modules, so pooling and normalisation are those `hpcq embed` used."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        ids, mask = tokens[:, 0], tokens[:, 1]
        width = max(int(mask.sum(dim=1).max()), 1)  # rows are padded to max_length: trim to the longest here
        features = {"input_ids": ids[:, :width], "attention_mask": mask[:, :width]}
        return self.transformer(features)["sentence_embedding"]


class JointModel(nn.Module):
    """Body and head as one module: `forward(tokens)` = head(body(tokens)), differentiable through both."""

    def __init__(self, body: SentenceEncoder, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(tokens).to(self.head_dtype))

    @property
    def head_dtype(self) -> torch.dtype:
        return next(iter(self.head.parameters())).dtype

    def train(self, mode: bool = True) -> JointModel:
        """A body with nothing to train stays in eval mode: no dropout, so it computes the frozen embeddings."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.body.parameters()):
            self.body.eval()
        return self


@dataclass
class JointData:
    """Token rows and labels of one run's train, validation and test sentences."""

    train: Split
    validation: Split
    test: Split
    n_classes: int


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    """[n, 2, max_length] int64: input ids and attention mask, padded (and truncated) to max_length."""
    encoded = tokenizer(texts, max_length=max_length, truncation=True, padding="max_length", return_tensors="pt")
    return torch.stack([encoded["input_ids"], encoded["attention_mask"]], dim=1).long()


def load_joint_data(config: dict, tokenizer: Any) -> JointData:
    """The paper's split of `data.dataset`, tokenized. Validation and test rows are ordered by length (their
    accuracy does not depend on the order, and batches of similar lengths carry less padding)."""
    data = config["data"]
    dataset = load_dataset(data["dataset"])
    if dataset.is_pair:
        raise DataError(f"data.dataset={data['dataset']!r} has sentence pairs; task joint embeds single sentences "
                        "(use sst2-sentences, or task glue for pair tasks)")
    labels = np.asarray(dataset.labels)
    split_seed = config["seed"] if data["split_seed"] is None else data["split_seed"]
    split = paper_split(labels, split_seed, data["per_class"], data["validation_fraction"])
    test = split.test
    if data["test_subset"] is not None and data["test_subset"] < len(test):
        test = np.sort(np.random.default_rng(split_seed).choice(test, size=data["test_subset"], replace=False))

    def part(rows: np.ndarray, by_length: bool) -> Split:
        tokens = tokenize(tokenizer, [dataset.texts[i] for i in rows], data["max_length"])
        targets = torch.as_tensor(labels[rows]).long()
        if by_length:
            order = torch.argsort(tokens[:, 1].sum(dim=1), stable=True)
            tokens, targets = tokens[order], targets[order]
        return Split(tokens, targets)

    n_classes = len(dataset.label_names) if dataset.label_names else int(labels.max()) + 1
    return JointData(part(split.train, False), part(split.validation, True), part(test, True), n_classes)


def build_joint_model(config: dict, transformer: nn.Module, data: JointData) -> AdaptedModel:
    """`transformer` (a SentenceTransformer) with the configured method on its body and a fresh head. The head
    is built right after seeding and prepared on the frozen embeddings of the training sentences, as task head
    does (so `method: frozen` starts from the frozen-body run's head, and `center` subtracts their mean, fixed
    while the body trains); QuanTA's gates are drawn after it."""
    if config["train"]["body_dropout"] is not None:
        for module in transformer.modules():
            if isinstance(module, nn.Dropout):
                module.p = config["train"]["body_dropout"]
    body = SentenceEncoder(transformer)
    torch.manual_seed(config["seed"])
    head = build_head(config["model"], transformer.get_embedding_dimension(), data.n_classes,
                      DTYPES[config["train"]["dtype"]])
    if hasattr(head, "prepare"):
        with torch.no_grad():
            body.eval()
            size = config["train"]["eval_batch_size"]
            head.prepare(torch.cat([body(data.train.x[start:start + size]) for start in range(0, len(data.train), size)]))
    adapter = config["adapter"]
    adapted = adapt_model(JointModel(body, head), config["method"], target_modules=adapter["target_modules"],
                          head_modules=[HEAD], axes=adapter["axes"], n_axes=adapter["n_axes"],
                          dropout=adapter["dropout"], path=adapter["path"], lora_rank=adapter["lora_rank"],
                          lora_alpha=adapter["lora_alpha"])
    adapted.model.to(DTYPES[config["train"]["dtype"]])  # the adapters' new tensors too
    return adapted


def selected_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What defines a trained joint model beyond the base body: trainable tensors, QuanTA's θ0 and the head's
    buffers (copies; the frozen body is the packaged model and need not be kept once per epoch)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {key: value.detach().clone() for key, value in model.state_dict().items()
            if key in trainable or ".quanta_frozen_" in key or f".{HEAD}." in f".{key}"}


def _method_facts(adapted: AdaptedModel) -> dict[str, Any]:
    facts: dict[str, Any] = {"adapter_params": adapted.counts["adapter"], "head_params": adapted.counts["head"],
                             "total_params": adapted.counts["total"]}
    if "axes" in adapted.details:
        facts["quanta_axes"] = ", ".join(sorted({"-".join(map(str, a)) for a in adapted.details["axes"].values()}))
    if "lora_rank" in adapted.details:
        facts["lora_rank"] = adapted.details["lora_rank"]
    return facts


def train_joint(config: dict, out: str | Path, resume: bool = False, progress: bool = True) -> Path | None:
    """Run one joint training described by a validated run config (`hpcq.train.config.load_config`) and write
    its result to `out` (checkpoint: `out` + ".ckpt", removed once the result is written); returns the path on
    rank 0 (None on other ranks)."""
    from hpcq.results import write_run

    out = Path(out)
    world = mpi_world()
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    transformer = load_sentence_model(resolve_model(config["data"]["model"])).to(DTYPES[config["train"]["dtype"]])
    data = load_joint_data(config, transformer.tokenizer)
    adapted = build_joint_model(config, transformer, data)
    model = adapted.model
    train = config["train"]
    optimizer = adamw_with_head_rate(model, [HEAD], train["lr"], train["body_lr"], train["weight_decay"])
    # the frozen body is not in the selected state: load it leniently
    tested = fit_and_test(model, data.test, config, world, lambda: fit_epochs(
        model, optimizer, data.train, data.validation, config, world, checkpoint_path(out), resume, progress,
        select=selected_state, desc=f"joint {config['method']}"), strict=False)
    if tested is None:
        return None
    head = find_modules(model, [HEAD], "head")[0][1]
    sizes = {"train_size": len(data.train), "val_size": len(data.validation), "test_size": len(data.test)}
    path = write_run(
        out, kind="train", config=config,
        extra={"model": {"parameters": head.parameter_counts() if hasattr(head, "parameter_counts") else {}},
               "weights": tested.weights()},
        **tested.result(started, world, sizes, adapted.counts["trainable"], **_method_facts(adapted)),
    )
    checkpoint_path(out).unlink(missing_ok=True)  # the result is whole; the run cannot be resumed any further
    barrier(world)
    return path
