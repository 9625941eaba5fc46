"""`hpcq train` for task "causal_lm": fine-tune a causal language model with QuanTA, LoRA or full fine-tuning
on a reasoning training set (loss on the answer tokens only), then score it by greedy generation.

    ranks (srun / torchrun / mpiexec, hpcq.train.distributed) → tokenizer + model (bf16 or fp32) → method →
    DDP or FSDP → AdamW steps over the global batch, checkpoint every train.checkpoint_every steps →
    evaluation by generation on eval.tasks → one run file (rank 0) and the trained weights next to it.

Exactness across rank counts: every rank draws the same global batch (a permutation seeded by the run seed and
the epoch), works on its contiguous share in micro-batches, and scales its summed token loss by
world_size / (answer tokens in the GLOBAL batch); the averaging all-reduce of DDP (or FSDP's reduce-scatter)
then gives exactly the one-rank gradient of the batch's mean token loss. Every rank runs the same number of
micro-batches (a rank out of rows runs a zero-weight one), as FSDP's collectives need. A partial last batch of
an epoch is dropped.

Checkpoints hold the full (unsharded) trainable weights, QuanTA's θ0, the optimizer state by parameter name,
the schedule, the step and the curves, so a run resumes on any number of ranks with any strategy. SIGTERM or
SIGUSR1 (Slurm's warning before the time limit) makes every rank stop at the next step boundary after writing
a checkpoint; the resubmitted job continues with --resume.

Result groups: metrics/ (per step: step_loss, step_s, step_tokens, step_lr, step_peak_bytes), final/
(eval_<task>_accuracy per task, eval_accuracy_mean, train_loss_last, counts, quanta_axes or lora_rank,
world_size, strategy, precision), timing/, energy/ (rank 0's meter over its last job segment; final/
energy_joules_ranks sums all ranks), memory/, eval/<task>/ (generated text, extracted and gold answers, flags).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hpcq.adapters.lora import apply_lora, linear_shapes, lora_parameter_count, matched_lora_rank
from hpcq.adapters.methods import quanta_parameters
from hpcq.adapters.quanta import QuantaConfig, QuantaModel, get_quanta_model
from hpcq.data.paths import data_root
from hpcq.data.ranks import partition
from hpcq.data.reasoning import (
    IGNORE_INDEX,
    TokenRow,
    collate,
    encode_examples,
    load_eval,
    load_train,
)
from hpcq.data.splits import subset_rows
from hpcq.errors import ConfigError, HpcqError
from hpcq.runtime import synchronize
from hpcq.train.checkpoint import checkpoint_path, load_run_checkpoint, save_checkpoint
from hpcq.train.distributed import (
    DistContext,
    StopRequest,
    expected_state_keys,
    gather_training_state,
    hf_model,
    init_distributed,
    resolve_strategy,
    restore_training_state,
    unwrap,
    wrap_model,
)
from hpcq.train.loop import check_finite_loss, rng_state, set_rng_state

#: QuanTA axes of the official scripts by hidden width: 16-8-8-4 on q_proj/v_proj of LLaMA-7B, LLaMA-2-7B and
#: LLaMA-3-8B (the only width they publish).
OFFICIAL_AXES = {4096: (16, 8, 8, 4)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


# ------------------------------------------------------------------------------------------------- model


def model_location(name: str) -> str:
    """Where to load `name` from: a local folder, the folder staged as $HPCQ_DATA/models/<org>--<name>, or the
    name itself (a Hugging Face name, served from the local cache only: every rank downloading the weights
    from a compute node is never wanted, and most compute nodes cannot)."""
    path = Path(os.path.expandvars(name)).expanduser()
    if path.is_dir():
        return str(path)
    staged = data_root() / "models" / name.replace("/", "--")
    return str(staged) if staged.is_dir() else name


def _load_error(name: str, err: Exception) -> ConfigError:
    slug = name.replace("/", "--")
    return ConfigError(
        f"could not load {name!r} ({err}); compute nodes are usually offline, so stage the weights on the login "
        f"node first (e.g. `huggingface-cli download {name} --local-dir $HPCQ_DATA/models/{slug}`) or pass a "
        f"local folder as model.name"
    )


def load_tokenizer(config: dict) -> Any:
    """The run's tokenizer (model.tokenizer, else the model's own)."""
    from transformers import AutoTokenizer

    name = config["model"]["tokenizer"] or config["model"]["name"]
    try:
        return AutoTokenizer.from_pretrained(model_location(name), local_files_only=True)
    except (OSError, ValueError) as err:
        raise _load_error(name, err) from err


def load_model(config: dict, device: torch.device) -> nn.Module:
    """The pretrained causal LM in the storage dtype of model.precision, on `device`."""
    from transformers import AutoModelForCausalLM, logging

    logging.set_verbosity_error()
    settings = config["model"]
    options: dict[str, Any] = {"dtype": DTYPES[settings["precision"]], "local_files_only": True,
                               "attn_implementation": settings["attn_implementation"]}
    if device.type == "cuda":
        options["device_map"] = {"": str(device)}  # straight to the GPU, not through host memory per rank
    try:
        model = AutoModelForCausalLM.from_pretrained(model_location(settings["name"]), **options)
    except (OSError, ValueError) as err:
        raise _load_error(settings["name"], err) from err
    return model.to(device)


def quanta_axes(config: dict, model: nn.Module) -> tuple[tuple[int, ...] | None, str]:
    """The adapter's axes and where they come from ('official', 'balanced' or 'config')."""
    axes = config["adapter"]["axes"]
    if axes == "official":
        official = OFFICIAL_AXES.get(int(hf_model(model).config.hidden_size))
        return (official, "official") if official else (None, "balanced")
    return (tuple(axes), "config") if axes else (None, "balanced")


def enable_checkpointing(model: nn.Module) -> bool:
    """Recompute each transformer block's activations in backward (non-reentrant, so frozen inputs are fine);
    transformers >= 5 calls it activation checkpointing. Returns whether the model reports it on."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        return bool(model.is_activation_checkpointing)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return bool(model.is_gradient_checkpointing)


def adapt(model: nn.Module, config: dict) -> tuple[nn.Module, dict[str, Any]]:
    """`model` prepared for config.method (in place; QuanTA and LoRA wrap it); returns it and facts to record.

    Trainable weights are float32 whatever the storage dtype (the master copy that the optimizer updates).
    """
    method, adapter = config["method"], config["adapter"]
    torch.manual_seed(config["seed"])
    axes, source = quanta_axes(config, model)
    quanta = QuantaConfig(adapter["target_modules"], axes=axes, n_axes=adapter["n_axes"],
                          dropout=adapter["dropout"])
    facts: dict[str, Any] = {}
    if method == "quanta":
        model = get_quanta_model(model, quanta)
        layers = model.quanta_layers
        facts.update(quanta_axes=", ".join(sorted({"-".join(map(str, l.axes)) for l in layers.values()})),
                     quanta_axes_source=source, adapted_layers=len(layers),
                     adapter_params=sum(l.n_parameters for l in layers.values()))
    elif method == "lora":
        shapes = linear_shapes(model, adapter["target_modules"])
        matched = quanta_parameters(model, quanta)
        rank = adapter["lora_rank"] or matched_lora_rank(matched, shapes)
        model = apply_lora(model, adapter["target_modules"], rank, adapter["lora_alpha"], adapter["dropout"])
        facts.update(lora_rank=rank, quanta_matched_params=matched, adapted_layers=len(shapes),
                     adapter_params=lora_parameter_count(rank, shapes))
    else:
        model.requires_grad_(True)
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    facts["n_trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    facts["total_params"] = sum(p.numel() for p in model.parameters())
    checkpointing = config["model"]["gradient_checkpointing"]
    facts["gradient_checkpointing"] = checkpointing and enable_checkpointing(hf_model(model))
    return model, facts


# --------------------------------------------------------------------------------------------------- data


def training_rows(config: dict, tokenizer: Any) -> tuple[list[TokenRow], dict[str, int]]:
    """The tokenised training rows (subset by seed) and counts to record."""
    data = config["data"]
    examples = load_train(data["train"])
    picked = [examples[i] for i in subset_rows(len(examples), data["train_subset"], config["seed"])]
    rows, dropped = encode_examples(tokenizer, picked, data["max_length"])
    return rows, {"train_size": len(rows), "train_dropped_too_long": dropped}


def batch_rows(n_rows: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Row indices of global batch `step`: epoch-wise permutations seeded by the run seed and the epoch."""
    per_epoch = n_rows // batch_size
    epoch, within = divmod(step, per_epoch)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[within * batch_size:(within + 1) * batch_size]


def total_steps(config: dict, n_rows: int, world_size: int) -> int:
    train = config["train"]
    if train["batch_size"] < world_size:
        raise ConfigError(f"train.batch_size={train['batch_size']} is smaller than the {world_size} ranks; every "
                          f"rank needs a row per step, so use a global batch of at least {world_size}")
    if n_rows < train["batch_size"]:
        raise ConfigError(f"only {n_rows} training rows for train.batch_size={train['batch_size']}; lower the "
                          f"batch size or raise data.train_subset")
    return train["max_steps"] or train["epochs"] * (n_rows // train["batch_size"])


# ----------------------------------------------------------------------------------------------- training


def token_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the answer tokens of `batch` (float32)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch["labels"][:, 1:].flatten(),
                           ignore_index=IGNORE_INDEX, reduction="sum")


@contextmanager
def gradient_sync(model: nn.Module, strategy: str, sync: bool) -> Iterator[None]:
    """Hold back the gradient all-reduce (DDP) or reduce-scatter (FSDP) until the last micro-batch."""
    if strategy == "ddp" and not sync:
        with model.no_sync():
            yield
        return
    if strategy == "fsdp":
        hf_model(model).set_requires_gradient_sync(sync)
    yield


def autocast(device: torch.device, config: dict):
    """bf16 matmuls for full fine-tuning, whose float32 master weights would otherwise compute in float32.

    QuanTA and LoRA need none: their frozen base weights are stored in bfloat16 and they cast their float32
    weights to the activations' dtype themselves (as the official QuanTA code and PEFT do)."""
    if config["model"]["precision"] == "bf16" and config["method"] == "full":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_step(model: nn.Module, rows: list[TokenRow], batch: torch.Tensor, ctx: DistContext, strategy: str,
               config: dict, pad_id: int) -> tuple[float, int]:
    """Forward/backward of this rank's share of one global batch, gradients synchronised; returns the
    batch's mean answer-token loss (over all ranks) and its answer-token count."""
    micro = config["train"]["micro_batch_size"]
    n_tokens = sum(rows[i].n_answer_tokens for i in batch.tolist())
    mine = batch[partition(len(batch), ctx.rank, ctx.world_size)].tolist()
    n_micro = math.ceil(math.ceil(len(batch) / ctx.world_size) / micro)
    loss_sum = 0.0
    for index in range(n_micro):
        part = mine[index * micro:(index + 1) * micro]
        weight = 1.0 if part else 0.0
        tensors = collate([rows[i] for i in (part or batch[:1].tolist())], pad_id)
        tensors = {name: value.to(ctx.device) for name, value in tensors.items()}
        with gradient_sync(model, strategy, index == n_micro - 1):
            with autocast(ctx.device, config):
                summed = token_loss_sum(model, tensors) * weight
            (summed * (ctx.world_size / n_tokens)).backward()
        loss_sum += float(summed.detach())
    return ctx.sum([loss_sum])[0] / n_tokens, n_tokens


def _new_state() -> dict[str, Any]:
    return {"step": 0, "train_s": 0.0,
            "metrics": {"step_loss": [], "step_s": [], "step_tokens": [], "step_lr": [], "step_peak_bytes": []}}


def resume_state(path: Path, config: dict, model: nn.Module, optimizer, scheduler) -> dict | None:
    """Load the checkpoint at `path` into the model (any rank count or strategy); None when there is none."""
    saved = load_run_checkpoint(path, config, mmap=True)  # every rank reads it; a node's ranks share the pages
    if saved is None:
        return None
    unexpected = sorted(set(saved["model"]) - expected_state_keys(model))
    missing = sorted({n for n, p in unwrap(model).named_parameters() if p.requires_grad} - set(saved["model"]))
    if unexpected or missing:
        raise ConfigError(f"checkpoint {path} does not fit this model (unexpected {unexpected[:3]}, missing "
                          f"{missing[:3]}); delete it to start over")
    restore_training_state(model, optimizer, saved["model"], saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    return saved["state"]


def write_checkpoint(path: Path, config: dict, model: nn.Module, optimizer, scheduler, state: dict,
                     ctx: DistContext) -> None:
    """Gather the full training state (all ranks take part) and write it atomically from rank 0."""
    model_state, optimizer_state = gather_training_state(model, optimizer)
    if ctx.is_main:
        save_checkpoint(path, {"config": config, "state": state, "model": model_state,
                               "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                               "rng": rng_state(), "ranks": ctx.world_size})
    ctx.barrier()


# ---------------------------------------------------------------------------------------------- evaluation


@contextmanager
def merged_for_eval(model: nn.Module, enabled: bool) -> Iterator[bool]:
    """QuanTA or LoRA merged into the base weights while inside (plain linear layers: no inference overhead);
    yields whether a merge happened."""
    merge = unmerge = None
    if enabled and isinstance(model, QuantaModel):
        merge, unmerge = model.merge, model.unmerge
    elif enabled and hasattr(model, "merge_adapter"):
        merge, unmerge = model.merge_adapter, model.unmerge_adapter
    if merge is None:
        yield False
        return
    merge()
    try:
        yield True
    finally:
        unmerge()


def evaluate(model: nn.Module, tokenizer: Any, config: dict, ctx: DistContext, strategy: str) -> tuple[dict, bool]:
    """Each eval task's TaskResult (every rank gets all), and whether the adapter was merged."""
    from hpcq.eval import evaluate_task

    settings = config["eval"]
    inner = unwrap(model)
    hf = hf_model(inner)
    inner.eval()
    hf.config.use_cache = True
    results = {}
    with merged_for_eval(inner, settings["merge"] and strategy != "fsdp") as merged:
        for task in settings["tasks"]:
            examples = load_eval(task)[: settings["subset"] or None]
            with autocast(ctx.device, config):
                results[task] = evaluate_task(hf, tokenizer, task, examples, batch_size=settings["batch_size"],
                                              max_new_tokens=settings["max_new_tokens"], device=ctx.device,
                                              rank=ctx.rank, world_size=ctx.world_size, synced=strategy == "fsdp")
    return results, merged


def weights_path(out: Path) -> Path:
    """Where the trained weights of the run writing `out` go."""
    return out.with_name(out.name + ".weights.safetensors")


def save_weights(path: Path, model_state: dict[str, torch.Tensor], config: dict) -> int:
    """The trainable weights (and QuanTA's θ0) as safetensors, keyed by name in the adapted model; bytes."""
    from safetensors.torch import save_file

    from hpcq.outputs import writing

    tensors = {key: value.detach().contiguous() for key, value in model_state.items()}
    with writing(path, "trained weights") as tmp:
        save_file(tensors, tmp, metadata={"format": "hpcq-causal-lm/1", "method": config["method"],
                                          "model": config["model"]["name"]})
    return path.stat().st_size


# ---------------------------------------------------------------------------------------------------- run


def train_causal_lm(config: dict, out: str | Path, resume: bool = False, progress: bool = True,
                    stop_after: int | None = None) -> Path | None:
    """Run one causal-LM fine-tuning described by a validated run config (`hpcq.train.config.load_config`) on
    the ranks this process was launched with; rank 0 writes the result to `out` and returns its path.

    stop_after: take at most this many optimizer steps in this call, then checkpoint and return None (a job
    sliced into wall-time pieces; the next call with resume=True continues). Checkpoint: `out` + ".ckpt",
    removed once the result is written. SIGTERM or SIGUSR1 stops every rank at the next step boundary with a
    checkpoint and an HpcqError saying how to continue (`hpcq train` then exits with status 2).
    """
    train = config["train"]
    if train["threads"] is not None:
        torch.set_num_threads(train["threads"])
    ctx = init_distributed(train["device"], config["distributed"]["backend"])
    try:
        return _run(config, Path(out), resume, progress, stop_after, ctx)
    finally:
        ctx.close()


def _run(config: dict, out: Path, resume: bool, progress: bool, stop_after: int | None,
         ctx: DistContext) -> Path | None:
    from transformers import get_scheduler

    from hpcq.energy import EnergyMeter
    from hpcq.train.glue import PeakMemory

    started = time.perf_counter()
    train = config["train"]
    strategy = resolve_strategy(config["distributed"]["strategy"], ctx.world_size)
    tokenizer = load_tokenizer(config)
    rows, data_counts = training_rows(config, tokenizer)
    steps = total_steps(config, len(rows), ctx.world_size)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    memory = PeakMemory(ctx.device)
    model, facts = adapt(load_model(config, ctx.device), config)
    hf_model(model).config.use_cache = False
    baseline = memory.current()
    model = wrap_model(model, ctx, strategy, DTYPES[config["model"]["precision"]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train["lr"],
                                  weight_decay=train["weight_decay"])
    scheduler = get_scheduler(train["schedule"], optimizer, num_warmup_steps=train["warmup_steps"],
                              num_training_steps=steps)
    ckpt = checkpoint_path(out)
    state = (resume_state(ckpt, config, model, optimizer, scheduler) if resume else None) or _new_state()

    metrics = state["metrics"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    taken = 0
    bar = tqdm(total=steps, initial=state["step"], desc=f"{config['method']} causal_lm", unit="step",
               disable=not progress or not ctx.is_main)
    # `with bar`: the bar closes before an error (a diverged loss) is printed
    with bar, EnergyMeter(config["energy"]["method"], sync=lambda: synchronize(ctx.device)) as meter, \
            StopRequest() as stop:
        model.train()
        while state["step"] < steps:
            synchronize(ctx.device)
            memory.reset()
            step_started = time.perf_counter()
            batch = batch_rows(len(rows), train["batch_size"], state["step"], config["seed"])
            loss, n_tokens = train_step(model, rows, batch, ctx, strategy, config, pad_id)
            # the loss is summed over ranks, so every rank stops at the same step
            check_finite_loss(loss, f"step {state['step'] + 1} of {steps}", f"train.lr={train['lr']:g}")
            if train["max_grad_norm"] is not None:
                torch.nn.utils.clip_grad_norm_(trainable, train["max_grad_norm"])
            metrics["step_lr"].append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(ctx.device)
            seconds = time.perf_counter() - step_started
            state["step"] += 1
            state["train_s"] += seconds
            taken += 1
            metrics["step_loss"].append(loss)
            metrics["step_s"].append(seconds)
            metrics["step_tokens"].append(n_tokens)
            metrics["step_peak_bytes"].append(memory.read())
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            signalled = ctx.any(stop.received is not None)  # ranks may get the signal a step apart
            halt = signalled or (stop_after is not None and taken >= stop_after)
            if halt or state["step"] % train["checkpoint_every"] == 0 or state["step"] == steps:
                write_checkpoint(ckpt, config, model, optimizer, scheduler, state, ctx)
            if halt and state["step"] < steps:
                if signalled:
                    raise HpcqError(f"stopped by a signal after step {state['step']} of {steps}; the checkpoint "
                                    f"{ckpt} holds the run so far: rerun with --resume to continue")
                return None
        bar.close()
        eval_started = time.perf_counter()
        results, merged = evaluate(model, tokenizer, config, ctx, strategy)
        eval_seconds = time.perf_counter() - eval_started
        model_state, _ = gather_training_state(model, optimizer)
    joules = ctx.sum([meter.reading.joules])[0]
    if not ctx.is_main:
        ctx.barrier()
        return None

    save = config["output"]["save_weights"]
    if save == "always" or (save == "auto" and config["method"] != "full"):
        facts["weights_bytes"] = save_weights(weights_path(out), model_state, config)
    from hpcq.results import write_run

    scores = {f"eval_{task}_accuracy": r.accuracy for task, r in results.items()}
    new_tokens = sum(r.new_tokens for r in results.values())
    path = write_run(
        out, kind="train", config=config, metrics=metrics,
        final={**scores, "eval_accuracy_mean": statistics.fmean(scores.values()) if scores else None,
               "train_loss_last": metrics["step_loss"][-1], "steps": state["step"], **data_counts, **facts,
               "world_size": ctx.world_size, "strategy": strategy, "launcher": ctx.launcher,
               "precision": config["model"]["precision"], "eval_merged": merged, "energy_joules_ranks": joules},
        timing={"step_s_median": statistics.median(metrics["step_s"]),
                "step_s_mean": statistics.fmean(metrics["step_s"]),
                "train_s": state["train_s"], "eval_s": eval_seconds,
                "eval_new_tokens_per_s": new_tokens / eval_seconds if eval_seconds > 0 else None,
                "total_s": time.perf_counter() - started},
        energy=meter.reading.as_dict(),
        extra={"memory": {"peak_bytes": int(max(metrics["step_peak_bytes"])), "baseline_bytes": baseline,
                          "method": memory.method, "device": str(ctx.device)},
               "eval": {task: r.as_group() for task, r in results.items()}},
    )
    ckpt.unlink(missing_ok=True)  # the result is whole; the run cannot be resumed any further
    ctx.barrier()
    return path
