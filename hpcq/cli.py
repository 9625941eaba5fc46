"""`hpcq <verb>`: one verb per workflow step.

Verbs are thin: they parse arguments, call one function of the package and print where the output went.
Heavy imports (torch, qiskit, transformers) happen inside each verb so that `hpcq --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hpcq.errors import ConfigError, HpcqError

app = typer.Typer(
    help="hpcq: quantum-head and QuanTA studies from one laptop to a supercomputer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks, side by side with a peer.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _usable_device(name: str | None) -> str | None:
    """`--device` as given, once this torch can use it: a GPU that is not there is a one-line error naming the
    option before any work, instead of torch's AssertionError in the middle of it."""
    if name is None:
        return None
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type != "cuda":
        return name
    if not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if torch.version.cuda is None and torch.version.hip is None else \
            "no GPU is visible to this torch"
        raise ConfigError(f"--device {name}: {why}; use --device cpu, or run on a GPU node with a CUDA or ROCm "
                          f"build of torch (hpcq doctor shows what is usable)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this node has {torch.cuda.device_count()} GPU(s); use cuda:0 to "
                          f"cuda:{torch.cuda.device_count() - 1}, or cuda")
    return name


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Say which backends, devices, MPI and Slurm are usable here, and how to enable the rest."""
    from hpcq.doctor import diagnose, render

    checks = diagnose()
    if as_json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        render(checks)


@app.command()
def selftest(
    gpu: Annotated[bool, typer.Option("--gpu", help="Check every GPU path (the only self-test so far).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for selftest.json, selftest.md and the logs.")] = Path(
        "results/selftest"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what it would run, run nothing.")] = False,
) -> None:
    """GPU acceptance: every gpu test, then the GPU benchmarks, each part under its own time limit (8 min in all
    on one H100/H200); one JSON + markdown summary."""
    from hpcq.selftest import dry_run_listing, run_selftest

    if not gpu:
        raise ConfigError("hpcq selftest checks the GPU paths: pass --gpu (add --dry-run to list the parts)")
    if dry_run:
        print(dry_run_listing(out))
        return
    summary = run_selftest(out)
    print(f"{'passed' if summary['passed'] else 'FAILED'}: {out / 'selftest.md'} and {out / 'selftest.json'}")
    if not summary["passed"]:
        raise typer.Exit(1)


@bench_app.command("head")
def bench_head(
    qubits: Annotated[int, typer.Option(help="Qubits Q of the re-uploading ansatz.")] = 10,
    layers: Annotated[int, typer.Option(help="Layers L per PQC.")] = 2,
    connectivity: Annotated[int, typer.Option(help="Ring distances C per layer.")] = 3,
    reuploads: Annotated[int, typer.Option(help="Re-uploading blocks N.")] = 2,
    batch: Annotated[int, typer.Option(help="Samples per forward+gradient call.")] = 32,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = "float32",
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, ...")] = "cpu",
    backend: Annotated[str, typer.Option(help="hpcq backend to time.")] = "statevector",
    peer: Annotated[Optional[str], typer.Option(help="Time a peer in the same run: pennylane.")] = None,
    min_seconds: Annotated[float, typer.Option(help="Minimum timed seconds per side.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Forward+gradient samples/s of the paper's re-uploading ansatz with <Z_0>, optionally against a peer."""
    from hpcq.bench.head import HeadBenchSpec, run_head_bench

    spec = HeadBenchSpec(qubits, layers, connectivity, reuploads, batch, dtype, _usable_device(device), backend)
    report = run_head_bench(spec, peer=peer, min_seconds=min_seconds, progress=not as_json)
    if as_json:
        print(json.dumps(report))
    else:
        from hpcq.bench.head import render

        render(report)


@bench_app.command("scale")
def bench_scale(
    qubits: Annotated[str, typer.Option(help="Qubit range A..B (inclusive).")],
    out: Annotated[Path, typer.Option("--out", help="Summary HDF5; each run goes to OUT's stem folder.")],
    ranks: Annotated[str, typer.Option(help="Comma-separated rank counts (powers of two), e.g. 1,2,4.")] = "1",
    backend: Annotated[str, typer.Option(help="distributed (any ranks), statevector or custatevec (1 rank).")] = "distributed",
    layers: Annotated[int, typer.Option(help="Layers L per PQC of the timed ansatz.")] = 1,
    connectivity: Annotated[int, typer.Option(help="Ring distances C per layer.")] = 1,
    reuploads: Annotated[int, typer.Option(help="Re-uploading blocks N.")] = 1,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = "float32",
    device: Annotated[str, typer.Option(help="torch device: cpu or cuda (one GPU per rank).")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help="torch threads per rank (default: OMP_NUM_THREADS).")] = None,
    min_seconds: Annotated[float, typer.Option(help="Minimum timed seconds per run.")] = 1.0,
    fused_qubits: Annotated[Optional[int], typer.Option(
        help="Widest fused block (qubits); a pass is one block. Default: the backend's own.")] = None,
    kernel: Annotated[str, typer.Option(help="distributed backend: auto (compiled CPU kernels), compiled or torch.")] = "auto",
    peer: Annotated[Optional[str], typer.Option(
        help="Also time peers on the same gate list (1 rank), values checked: any of qsim,aer,qulacs.")] = None,
    gradient: Annotated[bool, typer.Option(
        "--gradient", help="Also time forward+gradient calls and their ratio to the forward.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Time per gate pass, GB/s against the node's measured copy bandwidth, communication, strong and weak
    scaling of one state vector over MPI ranks; starts itself under mpiexec when --ranks asks for more."""
    from hpcq.bench.scale import ScaleSpec, bench_scale as run_bench, parse_qubits, parse_ranks
    from hpcq.bench.scale.peers import parse_peers
    from hpcq.outputs import check_output_file

    check_output_file(out, "--out")  # before mpiexec starts and the timings run
    spec = ScaleSpec(parse_qubits(qubits), parse_ranks(ranks), backend, layers, connectivity, reuploads, dtype,
                     _usable_device(device), threads, min_seconds, fused_qubits, kernel, parse_peers(peer), gradient)
    code = run_bench(spec, out, as_json)
    if code:
        raise typer.Exit(code)


@bench_app.command("adapters")
def bench_adapters(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.md and the runs/.")],
    config: Annotated[Path, typer.Option(help="Run config of task glue.")] = Path("config/runs/quanta_glue.yaml"),
    task: Annotated[Optional[list[str]], typer.Option(help="GLUE task (repeatable; default SST-2 and MRPC).")] = None,
    method: Annotated[Optional[list[str]], typer.Option(help="quanta, lora, full, frozen (repeatable; default all).")] = None,
    train_subset: Annotated[int, typer.Option(help="Training rows per run (0: all).")] = 1000,
    epochs: Annotated[int, typer.Option(help="Epochs per training run.")] = 1,
    repeats: Annotated[int, typer.Option(help="Interleaved training-step rounds.")] = 7,
    inference_repeats: Annotated[int, typer.Option(help="Interleaved inference rounds.")] = 31,
    inference_rows: Annotated[int, typer.Option(help="Dev rows per timed inference call.")] = 32,
    threads: Annotated[int, typer.Option(help="torch threads (1 is steadiest on a shared machine).")] = 1,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="key.path=value for the runs (repeatable).")] = None,
    quality: Annotated[bool, typer.Option(help="Train each method for its test metric (--no-quality: timing only).")] = True,
    lr: Annotated[Optional[list[float]], typer.Option(help="Learning rate to sweep for quanta and lora (repeatable); "
                                                           "each method's rate is chosen on validation.")] = None,
    validation_rows: Annotated[int, typer.Option(help="GLUE train rows held out to choose the --lr on.")] = 500,
) -> None:
    """QuanTA vs LoRA at a matched parameter count vs full fine-tuning vs a frozen body: test metric, train step
    time (interleaved, medians), memory, and merged inference against the base model."""
    from hpcq.bench.adapters import METHODS, AdapterBenchSpec, run_adapter_bench
    from hpcq.outputs import check_output_folder

    check_output_folder(out, "--out")
    spec = AdapterBenchSpec(config=str(config), tasks=tuple(task or ("SST-2", "MRPC")),
                            methods=tuple(method or METHODS), train_subset=train_subset or None, epochs=epochs,
                            repeats=repeats, inference_repeats=inference_repeats, inference_rows=inference_rows,
                            threads=threads, overrides=tuple(overrides or ()), quality=quality,
                            lrs=tuple(lr or ()), validation_rows=validation_rows)
    report = run_adapter_bench(spec, out)
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.json'}; load average before {report['load_before']}, after {report['load_after']}")


@app.command()
def embed(
    dataset: Annotated[str, typer.Option(help="sst2-sentences, glue/SST-2, glue/MRPC, glue/RTE, glue/CoLA, "
                                              "glue/STS-B, or SetFit/sst2 (online only).")] = "sst2-sentences",
    model: Annotated[str, typer.Option(help="'packaged' (offline all-MiniLM-L6-v2), 'all-mpnet-base-v2' (offline, "
                                            "the hpcq[mpnet] extra), a Hugging Face model name, or a local "
                                            "sentence-transformers folder.")] = "packaged",
    out_dir: Annotated[Optional[Path], typer.Option(help="Shard folder (default: $HPCQ_DATA/embeddings).")] = None,
    shard_size: Annotated[int, typer.Option(help="Rows per HDF5 shard.")] = 4096,
    batch_size: Annotated[int, typer.Option(help="Sentences per encoder batch.")] = 64,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: cuda if available).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Embed a data set into HDF5 shards with a frozen sentence transformer; under mpiexec each rank embeds its
    shards. Shards already made by the same model from the same data are reused."""
    from hpcq.data.embed import embed_dataset
    from hpcq.outputs import check_output_folder

    if out_dir is not None:
        check_output_folder(out_dir, "--out-dir")  # before the model loads and the sentences are embedded
    report = embed_dataset(dataset, model, out_dir, shard_size, batch_size, device=_usable_device(device),
                           progress=not as_json)
    if report.rank == 0:
        print(json.dumps(report.as_dict()) if as_json else report.summary())


@app.command("stage")
def stage_data(
    source: Annotated[Path, typer.Option(help="Folder holding the data sets (e.g. a shared data copy).")],
    dest: Annotated[Optional[Path], typer.Option(help="Data root to fill (default: $HPCQ_DATA, else ./data).")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option(help="Data set folder to stage (repeatable), e.g. "
                                                              "sst2-sentences, glue/RTE (default: all).")] = None,
) -> None:
    """Copy data sets into the data root (run on the login node), verifying every file's sha256."""
    from hpcq.data.stage import stage

    report = stage(source, dest, dataset)
    print(f"staged into {report.dest}: {len(report.copied)} copied, {len(report.unchanged)} already in place, "
          f"{report.readme_verified} checked against README checksums")


@app.command()
def aggregate(
    results_dir: Annotated[Path, typer.Argument(help="Folder searched recursively for run files (*.h5).")],
    out: Annotated[Path, typer.Option("--out", help="Where the tables, statistics and plots go.")],
) -> None:
    """All run files into one table (Parquet+CSV), screening statistics and plots; unreadable files are skipped."""
    from hpcq.results.analysis import analyse_study, render_analysis

    render_analysis(analyse_study(results_dir, out), out)


@app.command()
def energy(
    out: Annotated[Path, typer.Option("--out", help="Where the plot, sensitivity table and curves go.")],
    config: Annotated[Optional[Path], typer.Option(help="Crossover config YAML (default: the shipped one).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Results folder with bench_scale runs: the GPU parameters "
                                                         "that qualifying runs can carry replace the configured "
                                                         "ones; the others, and why, are listed.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also print which inputs move the crossover most, "
                                                            "measured or assumed.")] = False,
) -> None:
    """GPU-vs-QPU energy per inference against qubit count: the crossover, its band and its sensitivity."""
    from hpcq.report.crossover_report import render, run_crossover

    render(run_crossover(config, out, results), explain=explain)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="Study folder: run files, or aggregate/ and energy/ outputs.")],
    out: Annotated[Path, typer.Option("--out", help="Where report.html, report.md and its figures go.")],
) -> None:
    """One self-contained HTML page (plus Markdown) with the study's tables and plots; opens offline."""
    from hpcq.report.study_report import build_report

    built = build_report(results_dir, out)
    print(f"wrote {built.html} ({len(built.images)} embedded images) and {built.markdown}")


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", help="Run config YAML (its `task:` picks the trainer).")],
    out: Annotated[Path, typer.Option("--out", help="The run's HDF5 result file.")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="key.path=value override (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT.ckpt when it exists; keep OUT when "
                                                          "it already holds this config's result.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT when it already exists.")] = False,
) -> None:
    """Train one run (head, setfit, glue, joint or causal_lm) and write its HDF5 result; under mpiexec, srun or torchrun the ranks share the work."""
    from hpcq.train.run import train_from_config

    written = train_from_config(config, overrides or [], out, resume, overwrite)
    if written is not None:
        print(f"wrote {written}")


@app.command()
def tokenize(
    task: Annotated[str, typer.Option(help="GLUE task: SST-2, MRPC, RTE, CoLA or STS-B.")],
    model: Annotated[str, typer.Option(help="'packaged' (offline all-MiniLM-L6-v2), a Hugging Face model name, "
                                            "or a local model folder.")] = "packaged",
    out_dir: Annotated[Optional[Path], typer.Option(help="Token shard folder (default: $HPCQ_DATA/tokens).")] = None,
    max_length: Annotated[int, typer.Option(help="Tokens per row (longer rows are truncated).")] = 128,
    split: Annotated[Optional[list[str]], typer.Option(help="Split to tokenize (repeatable; default train, dev).")] = None,
) -> None:
    """Tokenize GLUE splits into HDF5 token shards; complete shards of the same data and tokenizer are reused."""
    from hpcq.data.tokens import tokenize_glue
    from hpcq.outputs import check_output_folder

    if out_dir is not None:
        check_output_folder(out_dir, "--out-dir")
    for name, path in tokenize_glue(task, model, out_dir, max_length, split or ("train", "dev")).items():
        print(f"{name}: {path}")


def main() -> None:
    """Entry point: user errors print one clear line and exit 2, without a traceback."""
    try:
        app()
    except HpcqError as err:
        typer.secho(f"hpcq: error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
