"""`hpcq train` for task "glue": sequence classification on a GLUE task with a Hugging Face body fine-tuned by
QuanTA, LoRA (at QuanTA's parameter count), full fine-tuning or a frozen body; GLUE dev is the test set.

    token shards (made first when missing) → model (packaged MiniLM body + fresh classification head) →
    method (hpcq.adapters.methods) → AdamW epochs with a checkpoint each epoch → dev metrics → one run file.

Result groups: metrics/ (per-step step_loss, step_s, step_peak_bytes; per-epoch train_loss, epoch_s and
test_<metric> for each of the task's metrics), final/ (test_<metric>, test_metric and test_metric_name for the
task's main metric, train_size, test_size, n_trainable_params, adapter_params, head_params, total_params,
lora_rank or quanta_axes), timing/ (step_s_median, step_s_mean, train_s, test_s, total_s), energy/ (EnergyMeter
over training and evaluation), memory/ (peak_bytes over all steps, baseline_bytes before training, method).

Resume: the per-epoch shuffle comes from a generator seeded by the run seed and the epoch, and the checkpoint
holds the trainable weights (plus QuanTA's frozen θ0), the optimizer, the schedule, the curves and the RNG
state, so a run resumed after any epoch ends as an unbroken one would.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hpcq.adapters.methods import adapt_model
from hpcq.adapters.targets import find_modules
from hpcq.data.sentence_model import PACKAGED, resolve_model
from hpcq.data.splits import subset_rows
from hpcq.data.tokens import TokenShard, read_token_shard, tokenize_glue
from hpcq.errors import ConfigError
from hpcq.runtime import synchronize
from hpcq.train.checkpoint import checkpoint_path, load_run_checkpoint, save_checkpoint
from hpcq.train.loop import check_finite_loss, rng_state, set_rng_state

#: task → its GLUE metrics, the main one first (F1 for MRPC and Pearson for STS-B, as the leaderboard lists them)
TASK_METRICS = {
    "SST-2": ("accuracy",),
    "MRPC": ("f1", "accuracy"),
    "RTE": ("accuracy",),
    "CoLA": ("matthews",),
    "STS-B": ("pearson", "spearman"),
}
REGRESSION_TASKS = ("STS-B",)


def glue_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics of `predictions` (class ids, or scores for STS-B) against `labels`."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    compute = {
        "accuracy": lambda: accuracy_score(labels, predictions),
        "f1": lambda: f1_score(labels, predictions),
        "matthews": lambda: matthews_corrcoef(labels, predictions),
        "pearson": lambda: pearsonr(predictions, labels).statistic,
        "spearman": lambda: spearmanr(predictions, labels).statistic,
    }
    return {name: float(compute[name]()) for name in TASK_METRICS[task]}


class PeakMemory:
    """Peak memory of each training step: CUDA allocations on a GPU; on Linux CPUs the process's peak resident
    set (VmHWM, reset before each step through /proc/self/clear_refs); elsewhere the resident set after the step.
    """

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.method = "cuda_max_memory_allocated"
        elif _clear_refs_works():
            self.method = "rss_peak"
        else:
            self.method = "rss_after_step"

    def reset(self) -> None:
        if self.method == "cuda_max_memory_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.method == "rss_peak":
            Path("/proc/self/clear_refs").write_text("5")

    def read(self) -> int:
        """Bytes: the peak since the last reset (or the current resident set)."""
        if self.method == "cuda_max_memory_allocated":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.method == "rss_peak":
            return _status_kib("VmHWM") * 1024
        import psutil

        return int(psutil.Process().memory_info().rss)

    def current(self) -> int:
        """Bytes in use now (allocated on the GPU, resident on the CPU)."""
        if self.method == "cuda_max_memory_allocated":
            return int(torch.cuda.memory_allocated(self.device))
        import psutil

        return int(psutil.Process().memory_info().rss)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _clear_refs_works() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") > 0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is visible here; use train.device=auto or cpu")
    return device


class MeanPooledClassifier(torch.nn.Module):
    """A Hugging Face encoder with a linear classifier on the attention-masked mean of its last hidden states.

    This is the pooling the packaged MiniLM was trained with (sentence-transformers); BERT's own sequence
    classifier reads the CLS token through a pooler that such models never trained for sentence meaning, so a
    short fine-tuning budget leaves it near chance. Called like a transformers model: returns `.loss` (cross
    entropy, or mean squared error for one output) when given labels, and `.logits`.
    """

    def __init__(self, encoder: torch.nn.Module, n_labels: int):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.dropout = torch.nn.Dropout(getattr(encoder.config, "hidden_dropout_prob", 0.1))
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.classifier(self.dropout((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)))
        loss = None
        if labels is not None:
            loss = (torch.nn.functional.mse_loss(logits[:, 0], labels.to(logits.dtype)) if logits.shape[1] == 1
                    else torch.nn.functional.cross_entropy(logits, labels.long()))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load_classifier(model_name: str, task: str, pooling: str = "cls") -> torch.nn.Module:
    """The body of `model_name` with a fresh sequence-classification head for `task`: the model's own (`cls`:
    BERT's pooled CLS token) or a `MeanPooledClassifier` (`mean`)."""
    spec = resolve_model(model_name)
    if model_name == PACKAGED:
        os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel, AutoModelForSequenceClassification, logging

    logging.set_verbosity_error()  # the "newly initialised classifier" notice is expected here
    n_labels = 1 if task in REGRESSION_TASKS else 2
    try:
        if pooling == "mean":
            return MeanPooledClassifier(AutoModel.from_pretrained(spec.location, local_files_only=spec.local), n_labels)
        return AutoModelForSequenceClassification.from_pretrained(spec.location, num_labels=n_labels,
                                                                  local_files_only=spec.local)
    except OSError as err:
        raise ConfigError(f"could not load model {model_name!r} ({err}); use 'packaged', a local model folder, "
                          "or a Hugging Face name cached here") from err


def _shards(config: dict) -> tuple[TokenShard, TokenShard]:
    data = config["data"]
    paths = tokenize_glue(data["glue_task"], data["model"], data["tokens_dir"], data["max_length"])
    train, test = read_token_shard(paths["train"]), read_token_shard(paths["dev"])
    train = _take(train, subset_rows(len(train), data["train_subset"], config["seed"]))
    test = _take(test, np.arange(min(len(test), data["test_subset"] or len(test))))
    return train, test


def _take(shard: TokenShard, rows: np.ndarray) -> TokenShard:
    return TokenShard({name: values[rows] for name, values in shard.arrays.items()}, shard.ids[rows], shard.attrs)


def batch_inputs(shard: TokenShard, rows: np.ndarray | torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs of `rows`, trimmed to the longest row in the batch (the shards are padded to max_length)."""
    rows = np.asarray(rows)
    mask = shard.arrays["attention_mask"][rows]
    width = max(int(mask.sum(axis=1).max()), 1)
    batch = {name: torch.as_tensor(shard.arrays[name][rows, :width].astype(np.int64), device=device)
             for name in ("input_ids", "attention_mask", "token_type_ids")}
    batch["labels"] = torch.as_tensor(shard.arrays["labels"][rows], device=device)
    return batch


@torch.no_grad()
def evaluate(model: torch.nn.Module, shard: TokenShard, task: str, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """The task's metrics on `shard` (predictions: argmax of the logits, or the score for STS-B)."""
    model.eval()
    outputs = []
    for start in range(0, len(shard), batch_size):
        batch = batch_inputs(shard, np.arange(start, min(start + batch_size, len(shard))), device)
        batch.pop("labels")
        logits = model(**batch).logits.float()
        outputs.append((logits[:, 0] if task in REGRESSION_TASKS else logits.argmax(dim=-1)).cpu().numpy())
    return glue_metrics(task, np.concatenate(outputs), shard.arrays["labels"])


def learning_rate(config: dict) -> float:
    """`train.lr`, or the method's own rate from `train.lr_by_method`."""
    return config["train"]["lr_by_method"].get(config["method"], config["train"]["lr"])


def _lr_settings(config: dict) -> str:
    """The rates this run trains with, named as its config names them."""
    train = config["train"]
    key = f"train.lr_by_method.{config['method']}" if config["method"] in train["lr_by_method"] else "train.lr"
    head = "" if train["head_lr"] is None else f", train.head_lr={train['head_lr']:g}"
    return f"{key}={learning_rate(config):g}{head}"


def adamw_with_head_rate(model: torch.nn.Module, head_modules: Sequence[str], head_lr: float, body_lr: float,
                         weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable tensors: those inside `head_modules` at `head_lr`, the rest at `body_lr`. A
    freshly initialised head wants a larger rate than pretrained weights or adapters do."""
    head_ids = {id(p) for _, module in find_modules(model, head_modules, "head_modules") for p in module.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) in head_ids], "lr": head_lr},
              {"params": [p for p in trainable if id(p) not in head_ids], "lr": body_lr}]
    return torch.optim.AdamW([group for group in groups if group["params"]], weight_decay=weight_decay)


def glue_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.Optimizer:
    """The run's AdamW: the method's rate, and `train.head_lr` (when set) for the classification head."""
    train, body_lr = config["train"], learning_rate(config)
    head_lr = body_lr if train["head_lr"] is None else train["head_lr"]
    return adamw_with_head_rate(model, config["adapter"]["head_modules"], head_lr, body_lr, train["weight_decay"])


def _schedule(optimizer: torch.optim.Optimizer, train: dict, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = int(round(train["warmup_ratio"] * total_steps))
    if train["schedule"] == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def _saved_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint needs of the model: the trainable tensors and QuanTA's frozen copies θ0."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {key: value.detach().clone() for key, value in model.state_dict().items()
            if key in trainable or ".quanta_frozen_" in key}


def _new_state() -> dict[str, Any]:
    return {"epoch": 0, "metrics": {"step_loss": [], "step_s": [], "step_peak_bytes": [], "train_loss": [],
                                    "epoch_s": []}}


def _resume(path: Path, config: dict, model, optimizer, scheduler) -> dict[str, Any] | None:
    saved = load_run_checkpoint(path, config)
    if saved is None:
        return None
    result = model.load_state_dict(saved["model"], strict=False)
    if result.unexpected_keys:
        raise ConfigError(f"checkpoint {path} has weights this model lacks ({result.unexpected_keys[:3]}); delete it")
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    return saved["state"]


def _train_epoch(model, optimizer, scheduler, shard: TokenShard, config: dict, epoch: int, device: torch.device,
                 memory: PeakMemory, state: dict[str, Any], bar: tqdm) -> float:
    """One shuffled pass over the training rows; appends per-step loss, time and peak memory to `state`."""
    train = config["train"]
    model.train()
    order = torch.randperm(len(shard), generator=torch.Generator().manual_seed(config["seed"] * 1_000_003 + epoch))
    trainable = [p for p in model.parameters() if p.requires_grad]
    metrics = state["metrics"]
    losses = []
    for start in range(0, len(shard), train["batch_size"]):
        batch = batch_inputs(shard, order[start:start + train["batch_size"]].numpy(), device)
        synchronize(device)
        memory.reset()
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        if train["max_grad_norm"] is not None:
            torch.nn.utils.clip_grad_norm_(trainable, train["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        metrics["step_s"].append(time.perf_counter() - started)
        metrics["step_peak_bytes"].append(memory.read())
        losses.append(loss.item())
        check_finite_loss(losses[-1], f"epoch {epoch + 1}, step {len(losses)}", _lr_settings(config))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    metrics["step_loss"] += losses
    return float(np.mean(losses))


def _final_counts(adapted) -> dict[str, Any]:
    counts = {"n_trainable_params": adapted.counts["trainable"], "adapter_params": adapted.counts["adapter"],
              "head_params": adapted.counts["head"], "total_params": adapted.counts["total"]}
    if "lora_rank" in adapted.details:
        counts.update(lora_rank=adapted.details["lora_rank"], quanta_matched_params=adapted.details["quanta_parameters"])
    if "axes" in adapted.details:
        counts["quanta_axes"] = ", ".join(sorted({"-".join(map(str, a)) for a in adapted.details["axes"].values()}))
    return counts


def train_glue(config: dict, out: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Run one GLUE fine-tuning described by a validated run config (`hpcq.train.config.load_config`) and write
    its result to `out` (checkpoint: `out` + ".ckpt", removed once the result is written)."""
    from hpcq.energy import EnergyMeter
    from hpcq.results import write_run

    out = Path(out)
    started = time.perf_counter()
    task, train = config["data"]["glue_task"], config["train"]
    if train["threads"] is not None:
        torch.set_num_threads(train["threads"])
    device = _device(train["device"])
    train_shard, test_shard = _shards(config)

    torch.manual_seed(config["seed"])  # the head's and the adapter's initial weights
    adapter = config["adapter"]
    adapted = adapt_model(load_classifier(config["data"]["model"], task, adapter["pooling"]), config["method"],
                          target_modules=adapter["target_modules"], head_modules=adapter["head_modules"],
                          axes=adapter["axes"], n_axes=adapter["n_axes"], dropout=adapter["dropout"],
                          path=adapter["path"], lora_rank=adapter["lora_rank"], lora_alpha=adapter["lora_alpha"])
    model = adapted.model.to(device)
    optimizer = glue_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_shard) / train["batch_size"])
    scheduler = _schedule(optimizer, train, steps_per_epoch * train["epochs"])
    ckpt = checkpoint_path(out)
    state = (_resume(ckpt, config, model, optimizer, scheduler) if resume else None) or _new_state()

    memory = PeakMemory(device)
    baseline = memory.current()
    metric_names = TASK_METRICS[task]
    test_seconds = 0.0
    bar = tqdm(total=steps_per_epoch * train["epochs"], initial=steps_per_epoch * state["epoch"],
               desc=f"{config['method']} {task}", unit="step", disable=not progress)
    # the bar closes before an error (a diverged loss) is printed
    with bar, EnergyMeter(config["energy"]["method"], sync=lambda: synchronize(device)) as meter:
        while state["epoch"] < train["epochs"]:
            epoch_started = time.perf_counter()
            state["metrics"]["train_loss"].append(
                _train_epoch(model, optimizer, scheduler, train_shard, config, state["epoch"], device, memory,
                             state, bar))
            test_started = time.perf_counter()
            scores = evaluate(model, test_shard, task, train["eval_batch_size"], device)
            test_seconds = time.perf_counter() - test_started
            for name, value in scores.items():
                state["metrics"].setdefault(f"test_{name}", []).append(value)
            state["epoch"] += 1
            state["metrics"]["epoch_s"].append(time.perf_counter() - epoch_started)
            save_checkpoint(ckpt, {"config": config, "state": state, "model": _saved_state(model),
                                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                   "rng": rng_state()})

    metrics = state["metrics"]
    final_scores = {f"test_{name}": metrics[f"test_{name}"][-1] for name in metric_names}
    path = write_run(
        out, kind="train", config=config, metrics=metrics,
        final={**final_scores, "test_metric": final_scores[f"test_{metric_names[0]}"],
               "test_metric_name": metric_names[0], "train_size": len(train_shard), "test_size": len(test_shard),
               "epochs_run": state["epoch"], **_final_counts(adapted)},
        timing={"step_s_median": statistics.median(metrics["step_s"]), "step_s_mean": statistics.fmean(metrics["step_s"]),
                "train_s": float(sum(metrics["epoch_s"])), "test_s": test_seconds,
                "total_s": time.perf_counter() - started},
        energy=meter.reading.as_dict(),
        extra={"memory": {"peak_bytes": int(max(metrics["step_peak_bytes"])), "baseline_bytes": baseline,
                          "method": memory.method, "device": str(device)}},
    )
    ckpt.unlink(missing_ok=True)  # the result is whole; the run cannot be resumed any further
    return path
