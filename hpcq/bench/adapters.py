"""`hpcq bench adapters`: QuanTA against LoRA at a matched trainable parameter count, full fine-tuning and a
frozen body, on a Hugging Face model with its real weights (default: the packaged MiniLM) and GLUE tasks.

Three measurements per task, each made so that a machine shared with other jobs biases no method:

* quality: one `hpcq train` run (task glue, the given run config with method, task, training subset and epochs
  set) per method, each in its own process, so its peak resident memory is its own; the run files stay in
  `out/runs/` and a finished one is reused. Gives the test metric (GLUE dev), the run's median step time and
  its peak memory.
* speed, interleaved: every method's model in one process on the same real training batch; in each of
  `repeats` rounds every method takes one optimizer step, in an order rotated every round, so load from other
  processes falls on all methods alike; the report gives medians, and ratios as medians of same-round ratios. QuanTA's forward path that "auto" did not
  choose for this batch (chain or dense, `hpcq.adapters.quanta.layer`) is timed as well. Memory beyond the weights: the bytes autograd keeps for
  backward in one step (exact: a saved-tensor hook, storages counted once, weights excluded) plus the
  gradients and AdamW moments of the trainable tensors.
* inference, interleaved: the base model against QuanTA merged (`merge_and_unload`, a plain model again) and
  unmerged (the cached W0 − T(θ0) + T(θ)) on one evaluation batch, after checking that merged and unmerged
  logits agree.

With learning rates to sweep (`lrs`), each adapter method (QuanTA, LoRA) is first trained once per rate on a
validation copy of the task (`out/validation-data/`: GLUE train with `validation_rows` rows held out as its
dev split, so selection never sees GLUE dev); the rate with the best validation metric is the one its quality
run (on GLUE dev) uses. Full fine-tuning and the frozen body keep the run config's rates.

`uptime` load averages are recorded before and after; the report is JSON plus a Markdown table.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hpcq.adapters.methods import METHODS, AdaptedModel, adapt_model
from hpcq.data.paths import DATA_ENV, data_file, dataset_dir
from hpcq.errors import ConfigError
from hpcq.train.config import apply_overrides, load_config

SWEPT = ("quanta", "lora")
"""The methods whose learning rate `--lr` sweeps; full fine-tuning and the frozen body keep the config's."""


@dataclass(frozen=True)
class AdapterBenchSpec:
    """What to run: the glue run config, tasks, methods, and the sizes that keep it within a small machine."""

    config: str = "config/runs/quanta_glue.yaml"
    tasks: tuple[str, ...] = ("SST-2", "MRPC")
    methods: tuple[str, ...] = METHODS
    train_subset: int | None = 1000
    epochs: int = 1
    repeats: int = 7
    inference_repeats: int = 31
    inference_rows: int = 32
    threads: int = 1
    overrides: tuple[str, ...] = ()
    quality: bool = True
    lrs: tuple[float, ...] = ()
    validation_rows: int = 500


@dataclass
class TaskReport:
    task: str
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    inference: dict[str, Any] = field(default_factory=dict)
    batch_tokens: int = 0


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return [round(value, 2) for value in os.getloadavg()]


def _task_config(spec: AdapterBenchSpec, task: str, method: str) -> dict:
    overrides = [*spec.overrides, f"data.glue_task={task}", f"method={method}", f"train.epochs={spec.epochs}",
                 f"train.threads={spec.threads}", "train.device=cpu"]
    if spec.train_subset is not None:
        overrides.append(f"data.train_subset={spec.train_subset}")
    task_of_file = load_config(spec.config)["task"]
    if task_of_file != "glue":
        raise ConfigError(f"--config {spec.config} is a task {task_of_file!r} config; the benchmark needs task glue "
                          "(e.g. config/runs/quanta_glue.yaml)")
    return load_config(spec.config, overrides)


def _train_process(config: dict, out: Path, data_root: Path | None = None) -> str | None:
    """One `hpcq train` process writing `out` (skipped when `out` exists); None, or its error's last lines."""
    import yaml

    if out.exists():
        return None
    config_file = out.with_suffix(".yaml")
    config_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": str(config["train"]["threads"])}
    if data_root is not None:
        env[DATA_ENV] = str(data_root)
    completed = subprocess.run([sys.executable, "-m", "hpcq", "train", "--config", str(config_file),
                                "--out", str(out)], env=env, capture_output=True, text=True)
    return None if completed.returncode == 0 else completed.stderr.strip()[-800:]


def _quality_run(config: dict, out: Path) -> dict[str, Any]:
    """One `hpcq train` process (reused when its result exists); its metric, step time and peak memory."""
    from hpcq.results import read_run

    error = _train_process(config, out)
    if error is not None:
        raise ConfigError(f"benchmark run {out.name} failed: {error}")
    run = read_run(out)
    memory = run.extra["memory"]
    return {"metric_name": run.final["test_metric_name"], "metric": float(run.final["test_metric"]),
            "run_step_s": float(run.timing["step_s_median"]), "run_train_s": float(run.timing["train_s"]),
            "peak_rss_bytes": int(memory["peak_bytes"]), "baseline_rss_bytes": int(memory["baseline_bytes"]),
            "memory_method": memory["method"], "trainable_params": int(run.final["n_trainable_params"]),
            "adapter_params": int(run.final["adapter_params"]), "run_file": str(out)}


def split_validation_lines(lines: list[bytes], rows: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """GLUE train file lines (header first) → (train lines, validation lines), both with the header; `rows`
    data lines drawn by `seed` go to validation, the rest stay in train, each in the file's order."""
    header, data = lines[0], lines[1:]
    if not 0 < rows < len(data):
        raise ConfigError(f"--validation-rows {rows} must be between 1 and the {len(data) - 1} training rows "
                          f"that leave at least one to train on")
    held_out = np.zeros(len(data), dtype=bool)
    held_out[np.random.default_rng(seed).choice(len(data), size=rows, replace=False)] = True
    return ([header, *(line for line, out in zip(data, held_out) if not out)],
            [header, *(line for line, out in zip(data, held_out) if out)])


def validation_root(task: str, rows: int, seed: int, out: Path) -> Path:
    """A data root holding `glue/<task>/` with GLUE train split into train.tsv and a held-out dev.tsv (so a
    plain `hpcq train` there reports the validation metric as its test metric); returns the root."""
    source = data_file(dataset_dir(f"glue/{task}"), "train.tsv").read_bytes().splitlines(keepends=True)
    lines = [line if line.endswith(b"\n") else line + b"\n" for line in source]
    train, validation = split_validation_lines(lines, rows, seed)
    folder = out / "glue" / task
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_bytes(b"".join(train))
    (folder / "dev.tsv").write_bytes(b"".join(validation))
    return out


def select_rate(scores: dict[float, float | None]) -> float:
    """The learning rate with the best validation metric (higher is better; None: the run diverged); ties go
    to the smaller rate."""
    finite = {lr: score for lr, score in scores.items() if score is not None}
    if not finite:
        raise ConfigError(f"every learning rate of the sweep ({sorted(scores)}) diverged; try smaller rates")
    return max(sorted(finite), key=lambda lr: finite[lr])


def _with_rate(config: dict, lr: float) -> dict:
    return apply_overrides(config, [f"train.lr_by_method.{config['method']}={lr!r}"])


def sweep_rates(config: dict, spec: AdapterBenchSpec, out: Path, progress: bool) -> dict[str, Any]:
    """Train `config`'s method at every rate of `spec.lrs` on the validation copy of its task; the validation
    metric per rate (None where the loss diverged) and the chosen rate."""
    from hpcq.results import read_run

    task, method = config["data"]["glue_task"], config["method"]
    root = validation_root(task, spec.validation_rows, config["seed"], out / "validation-data")
    held_out = apply_overrides(config, [f"data.tokens_dir={out / 'validation-tokens'}",
                                        "data.test_subset=null"])
    scores: dict[float, float | None] = {}
    for lr in spec.lrs:
        if progress:
            print(f"[bench adapters] {task} {method}: validation run at lr {lr:g} (load {load_average()})",
                  flush=True)
        run_file = out / "validation-runs" / f"{task}-{method}-lr{lr:g}.h5"
        run_file.parent.mkdir(parents=True, exist_ok=True)
        error = _train_process(_with_rate(held_out, lr), run_file, root)
        if error is not None and "the run diverged" not in error:  # a diverged rate is a result, not an error
            raise ConfigError(f"validation run {run_file.name} failed: {error}")
        scores[lr] = None if error is not None else float(read_run(run_file).final["test_metric"])
    return {"validation": {f"{lr:g}": score for lr, score in scores.items()}, "lr": select_rate(scores),
            "validation_rows": spec.validation_rows}


def _adapted(config: dict, method: str, path: str | None = None) -> AdaptedModel:
    from hpcq.train.glue import load_classifier

    adapter = config["adapter"]
    torch.manual_seed(config["seed"])
    model = load_classifier(config["data"]["model"], config["data"]["glue_task"], adapter["pooling"])
    return adapt_model(model, method,
                       target_modules=adapter["target_modules"], head_modules=adapter["head_modules"],
                       axes=adapter["axes"], n_axes=adapter["n_axes"], dropout=adapter["dropout"],
                       path=path or adapter["path"], lora_rank=adapter["lora_rank"], lora_alpha=adapter["lora_alpha"])


def _real_batches(config: dict, eval_rows: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A training batch (batch_size random training rows) and an evaluation batch (the first `eval_rows` dev
    rows)."""
    from hpcq.data.tokens import read_token_shard, tokenize_glue
    from hpcq.train.glue import batch_inputs

    data, train = config["data"], config["train"]
    paths = tokenize_glue(data["glue_task"], data["model"], data["tokens_dir"], data["max_length"])
    shard, dev = read_token_shard(paths["train"]), read_token_shard(paths["dev"])
    rows = np.random.default_rng(config["seed"]).choice(len(shard), size=train["batch_size"], replace=False)
    evaluation = batch_inputs(dev, np.arange(min(len(dev), eval_rows)), torch.device("cpu"))
    evaluation.pop("labels")
    return batch_inputs(shard, np.sort(rows), torch.device("cpu")), evaluation


def saved_for_backward_bytes(model: nn.Module, step: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves for backward while `step()` builds the graph: each storage once,
    and none of the model's own weights or buffers (they are resident anyway)."""
    resident = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in resident:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = step()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def _dense_chosen(adapted: AdaptedModel, batch: dict[str, torch.Tensor]) -> bool:
    """Whether the QuanTA layers of `adapted` take the dense path on `batch` (as they do in its forward)."""
    tokens = int(batch["input_ids"].numel())
    return all(layer.chooses_dense(tokens) for layer in adapted.model.quanta_layers.values())


def _stepper(model: nn.Module, batch: dict[str, torch.Tensor], config: dict) -> Callable[[], float]:
    from hpcq.train.glue import glue_optimizer

    optimizer = glue_optimizer(model, config)

    def step() -> float:
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    return step


def interleaved(calls: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call per round: one warm-up round, then `repeats` rounds in an order rotated each round."""
    names = list(calls)
    for name in names:
        calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(calls[name]())
    return times


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """The median over rounds of `name`'s time over `reference`'s in the same round: slow drifts in the load of
    a shared machine cancel within a round, where they would not between two separate medians."""
    return statistics.median(a / b for a, b in zip(times[name], times[reference]))


def _timed(function: Callable[[], Any]) -> Callable[[], float]:
    def call() -> float:
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    return call


def _memory_row(adapted: AdaptedModel, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    model = adapted.model.train()
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    row = {"trainable_params": adapted.counts["trainable"],
           "activation_bytes": saved_for_backward_bytes(model, lambda: model(**batch).loss),
           "optimizer_bytes": 3 * trainable}  # gradient + AdamW's two moments
    if "lora_rank" in adapted.details:
        row["lora_rank"] = adapted.details["lora_rank"]
    if adapted.method == "quanta":
        row["path"] = "dense" if _dense_chosen(adapted, batch) else "chain"
    return row


def speed(config: dict, methods: tuple[str, ...], spec: AdapterBenchSpec
          ) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int]:
    """Interleaved train-step medians and memory per method (and QuanTA's other path), interleaved inference;
    also returns the training batch's token count."""
    batch, evaluation = _real_batches(config, spec.inference_rows)
    variants: dict[str, AdaptedModel] = {}
    for method in methods:
        variants[method] = _adapted(config, method)
        if method == "quanta":  # the path auto did not choose for this batch, for comparison
            other = "chain" if _dense_chosen(variants[method], batch) else "dense"
            variants[f"quanta[{other}]"] = _adapted(config, method, other)
    report = {name: _memory_row(adapted, batch) for name, adapted in variants.items()}
    steps = {name: _stepper(adapted.model, batch, {**config, "method": adapted.method})
             for name, adapted in variants.items()}
    times = interleaved(steps, spec.repeats)
    for name, seconds in times.items():
        report[name].update(step_s=statistics.median(seconds), step_s_all=seconds)
        if "lora" in times:
            report[name]["over_lora"] = paired_ratio(times, name, "lora")
    inference = _inference(config, variants.get("quanta"), evaluation, spec.inference_repeats)
    return report, inference, int(batch["attention_mask"].sum())


@torch.no_grad()
def _inference(config: dict, quanta: AdaptedModel | None, evaluation: dict[str, torch.Tensor],
               repeats: int) -> dict[str, Any]:
    if quanta is None:
        return {}
    from hpcq.train.glue import load_classifier

    base = load_classifier(config["data"]["model"], config["data"]["glue_task"], config["adapter"]["pooling"]).eval()
    unmerged = copy.deepcopy(quanta.model).eval()
    generator = torch.Generator().manual_seed(1)
    for name, parameter in unmerged.named_parameters():  # a trained-looking update, so merging changes W
        if "quanta_gates" in name:
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    expected = unmerged(**evaluation).logits
    merged = copy.deepcopy(unmerged).merge_and_unload().eval()
    difference = float((merged(**evaluation).logits - expected).abs().max())
    calls = {name: _timed(lambda m=model: m(**evaluation)) for name, model in
             (("base", base), ("quanta_merged", merged), ("quanta_unmerged", unmerged))}
    times = interleaved(calls, repeats)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"rows": int(evaluation["input_ids"].shape[0]), "median_s": medians, "all_s": times,
            "merged_over_base": paired_ratio(times, "quanta_merged", "base"),
            "unmerged_over_base": paired_ratio(times, "quanta_unmerged", "base"),
            "merged_vs_unmerged_max_abs_logit_difference": difference}


def run_adapter_bench(spec: AdapterBenchSpec, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark for every task; write `out/report.json` and `out/report.md`; return the report."""
    unknown = sorted(set(spec.methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"--method {unknown} is not one of {', '.join(METHODS)}")
    from hpcq.train.glue import learning_rate

    if spec.lrs and not spec.quality:
        raise ConfigError("--lr sweeps learning rates for the quality runs; it cannot go with --no-quality")
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    torch.set_num_threads(spec.threads)
    report: dict[str, Any] = {"spec": asdict(spec), "load_before": load_average(), "tasks": {},
                              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    for task in spec.tasks:
        configs = {method: _task_config(spec, task, method) for method in spec.methods}
        task_report = TaskReport(task)
        if spec.quality:
            for method, config in configs.items():
                sweep = sweep_rates(config, spec, out, progress) if spec.lrs and method in SWEPT else None
                if sweep is not None:
                    config = _with_rate(config, sweep["lr"])
                if progress:
                    print(f"[bench adapters] {task} {method}: training run (load {load_average()})", flush=True)
                lr = learning_rate(config)  # in the file name: a later sweep reuses a run at its chosen rate
                run = _quality_run(config, out / "runs" / f"{task}-{method}-lr{lr:g}.h5")
                task_report.methods[method] = {**run, "lr": lr, **({"sweep": sweep} if sweep else {})}
        if progress:
            print(f"[bench adapters] {task}: interleaved step timing (load {load_average()})", flush=True)
        timings, task_report.inference, task_report.batch_tokens = speed(configs[spec.methods[0]], spec.methods, spec)
        for name, values in timings.items():
            task_report.methods.setdefault(name, {}).update(values)
        report["tasks"][task] = asdict(task_report)
        _write(report, out)  # after every task, so a long run leaves what it has measured
    report["load_after"] = load_average()
    _write(report, out)
    return report


def _write(report: dict[str, Any], out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render_markdown(report))


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value / 2**20:.1f}"


def _sweep_lines(report: dict[str, Any]) -> list[str]:
    """The learning-rate sweep as a table: validation metric per rate, the chosen one in bold."""
    rows = [(task, name, row["sweep"]) for task, task_report in report["tasks"].items()
            for name, row in task_report["methods"].items() if "sweep" in row]
    if not rows:
        return []
    lines = ["", f"Learning rates chosen on validation ({rows[0][2]['validation_rows']} GLUE train rows held "
             "out; diverged: the loss became NaN/Inf):", "", "| task | method | validation metric per lr |",
             "|---|---|---|"]
    for task, name, sweep in rows:
        cells = [("diverged" if score is None else f"{score:.4f}") for score in sweep["validation"].values()]
        marked = [f"**{lr}: {cell}**" if float(lr) == sweep["lr"] else f"{lr}: {cell}"
                  for lr, cell in zip(sweep["validation"], cells)]
        lines.append(f"| {task} | {name} | {', '.join(marked)} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables: one row per (task, method), then inference per task."""
    spec = report["spec"]
    lines = [f"QuanTA vs LoRA (matched parameters) vs full vs frozen: {spec['config']}, train subset "
             f"{spec['train_subset']}, {spec['epochs']} epoch(s), {spec['threads']} thread(s), {spec['repeats']} "
             f"interleaved training rounds, {spec['inference_repeats']} inference rounds. Load average before "
             f"{report['load_before']}, after {report.get('load_after')}.", "",
             "| task | method | trainable params | lr | test metric | step s (interleaved median) "
             "| × LoRA (paired median) | step s (in run) | activations MB | grads+AdamW MB "
             "| peak RSS MB (run) |",
             "|" + "---|" * 11]
    for task, task_report in report["tasks"].items():
        methods = task_report["methods"]
        for name, row in methods.items():
            cells = [task, name + (f" (r={row['lora_rank']})" if "lora_rank" in row else ""),
                     str(row.get("trainable_params", "")), f"{row['lr']:g}" if "lr" in row else "",
                     f"{row['metric_name']} {row['metric']:.4f}" if "metric" in row else "",
                     f"{row['step_s']:.3f}" if "step_s" in row else "",
                     f"{row['over_lora']:.2f}" if "over_lora" in row else "",
                     f"{row['run_step_s']:.3f}" if "run_step_s" in row else "",
                     _mb(row.get("activation_bytes")), _mb(row.get("optimizer_bytes")), _mb(row.get("peak_rss_bytes"))]
            lines.append("| " + " | ".join(cells) + " |")
    lines += _sweep_lines(report)
    lines += ["", "Inference (no gradients; ratios are medians of same-round ratios):", "",
              "| task | tokens per train batch | eval rows | base s | QuanTA merged s | merged / base | "
                  "QuanTA unmerged s | unmerged / base | max logit difference merged vs unmerged |", "|" + "---|" * 9]
    for task, task_report in report["tasks"].items():
        inference = task_report["inference"]
        if not inference:
            continue
        median = inference["median_s"]
        lines.append(f"| {task} | {task_report['batch_tokens']} | {inference['rows']} | {median['base']:.3f} | "
                     f"{median['quanta_merged']:.3f} | {inference['merged_over_base']:.3f} | "
                     f"{median['quanta_unmerged']:.3f} | {inference['unmerged_over_base']:.3f} | "
                     f"{inference['merged_vs_unmerged_max_abs_logit_difference']:.2e} |")
    return "\n".join(lines) + "\n"
