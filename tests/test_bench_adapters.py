"""`hpcq bench adapters` on cut copies of the real GLUE files and the packaged MiniLM: the report has every
method's metric, interleaved step times and memory, QuanTA's other forward path, and merged inference that
matches the unmerged model; the Markdown table and the CLI verb."""

import json
import subprocess
import sys

import pytest

from hpcq.bench.adapters import (AdapterBenchSpec, interleaved, paired_ratio, run_adapter_bench, select_rate,
                                 split_validation_lines)
from hpcq.errors import ConfigError
from hpcq.results import read_run
from test_glue_tokens import small_glue

SMALL = ("data.max_length=32", "train.batch_size=8", "train.eval_batch_size=16", "adapter.axes=[8,8,6]",
         "energy.method=estimate")


@pytest.fixture
def sst2(tmp_path, monkeypatch):
    root = small_glue(tmp_path / "data", "SST-2", {"train": 24, "dev": 16})
    monkeypatch.setenv("HPCQ_DATA", str(root))
    return root


def test_interleaved_rotates_the_order_and_keeps_every_time():
    order = []
    calls = {name: (lambda n=name: order.append(n) or 0.5) for name in "abc"}
    times = interleaved(calls, repeats=3)
    assert order == list("abc") + list("abc") + list("bca") + list("cab")  # a warm-up round first
    assert times == {name: [0.5] * 3 for name in "abc"}
    # the ratio is taken within each round, then the median: a slow round does not bias it
    assert paired_ratio({"q": [1.0, 10.0, 1.2], "l": [1.0, 9.0, 1.0]}, "q", "l") == pytest.approx(10 / 9)  # not 1.2


@pytest.mark.slow
def test_report_compares_quanta_and_lora(tmp_path, sst2):
    spec = AdapterBenchSpec(tasks=("SST-2",), methods=("quanta", "lora"), train_subset=16, repeats=2,
                            inference_repeats=3, inference_rows=16, overrides=SMALL)
    report = run_adapter_bench(spec, tmp_path / "bench", progress=False)
    methods = report["tasks"]["SST-2"]["methods"]
    assert set(methods) == {"quanta", "lora", f"quanta[{'dense' if methods['quanta']['path'] == 'chain' else 'chain'}]"}
    for name in ("quanta", "lora"):
        row = methods[name]
        assert row["metric_name"] == "accuracy" and 0 <= row["metric"] <= 1 and row["peak_rss_bytes"] > 0
        assert len(row["step_s_all"]) == 2 and row["step_s"] > 0 and row["activation_bytes"] > 0
    assert methods["lora"]["over_lora"] == 1.0 and methods["quanta"]["over_lora"] > 0
    assert methods["lora"]["lora_rank"] == 11 and methods["quanta"]["adapter_params"] == 104_448
    # QuanTA keeps at most a few activation-sized tensors more than LoRA of the same parameter count
    assert methods["quanta"]["activation_bytes"] < 2 * methods["lora"]["activation_bytes"]
    inference = report["tasks"]["SST-2"]["inference"]
    assert inference["merged_vs_unmerged_max_abs_logit_difference"] < 1e-5 and inference["rows"] == 16
    assert set(inference["median_s"]) == {"base", "quanta_merged", "quanta_unmerged"}
    table = (tmp_path / "bench" / "report.md").read_text()
    assert "| SST-2 | lora (r=11) |" in table and "merged / base" in table
    assert json.loads((tmp_path / "bench" / "report.json").read_text())["load_after"]
    assert (sorted(p.name for p in (tmp_path / "bench" / "runs").glob("*.h5"))
            == ["SST-2-lora-lr0.003.h5", "SST-2-quanta-lr0.003.h5"])


def test_bad_method_and_wrong_task_are_refused(tmp_path, sst2):
    with pytest.raises(ConfigError, match=r"--method \['qlora'\] is not one of quanta, lora, full, frozen"):
        run_adapter_bench(AdapterBenchSpec(methods=("qlora",)), tmp_path)
    with pytest.raises(ConfigError, match="is a task 'joint' config; the benchmark needs task glue"):
        run_adapter_bench(AdapterBenchSpec(config="config/runs/quanta_quantum_head.yaml", quality=False), tmp_path)


def test_cli_verb_timing_only(tmp_path, sst2):
    command = [sys.executable, "-m", "hpcq", "bench", "adapters", "--out", str(tmp_path / "b"), "--task", "SST-2",
               "--method", "quanta", "--method", "frozen", "--no-quality", "--repeats", "1",
               "--inference-repeats", "1", "--inference-rows", "4",
               *[arg for item in SMALL for arg in ("--set", item)]]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "| SST-2 | frozen |" in completed.stdout and "load average before" in completed.stdout


def test_validation_split_holds_out_rows_disjoint_from_train():
    lines = [b"sentence\tlabel\n", *(f"row {i}\t{i % 2}\n".encode() for i in range(20))]
    train, validation = split_validation_lines(lines, 5, seed=3)
    assert train[0] == validation[0] == lines[0] and len(validation) == 6 and len(train) == 16
    assert sorted(train[1:] + validation[1:]) == sorted(lines[1:])  # every row once, none in both
    assert train[1:] == [line for line in lines[1:] if line in train]  # the file's order kept
    assert split_validation_lines(lines, 5, seed=3) == (train, validation)  # seeded
    with pytest.raises(ConfigError, match="--validation-rows 20 must be between 1 and the 19"):
        split_validation_lines(lines, 20, seed=0)


def test_select_rate_takes_the_best_validation_metric_and_skips_diverged_rates():
    assert select_rate({1e-4: 0.70, 1e-3: 0.81, 1e-2: None}) == 1e-3
    assert select_rate({1e-3: 0.80, 3e-4: 0.80}) == 3e-4  # a tie goes to the smaller rate
    with pytest.raises(ConfigError, match="every learning rate of the sweep"):
        select_rate({1e-2: None})


@pytest.mark.slow
def test_learning_rate_sweep_chooses_on_held_out_train_rows(tmp_path, sst2):
    spec = AdapterBenchSpec(tasks=("SST-2",), methods=("quanta",), train_subset=12, repeats=1, inference_repeats=1,
                            inference_rows=4, overrides=SMALL, lrs=(1e-4, 1e-2), validation_rows=8)
    report = run_adapter_bench(spec, tmp_path / "bench", progress=False)
    row = report["tasks"]["SST-2"]["methods"]["quanta"]
    sweep = row["sweep"]
    assert set(sweep["validation"]) == {"0.0001", "0.01"} and sweep["lr"] == row["lr"] in (1e-4, 1e-2)
    assert sweep["lr"] == select_rate({float(lr): score for lr, score in sweep["validation"].items()})
    held_out = tmp_path / "bench" / "validation-data" / "glue" / "SST-2"
    assert len((held_out / "dev.tsv").read_text().splitlines()) == 9  # header + 8 rows, none of them trained on
    assert len((held_out / "train.tsv").read_text().splitlines()) == 1 + 24 - 8
    validation_run = read_run(tmp_path / "bench" / "validation-runs" / f"SST-2-quanta-lr{sweep['lr']:g}.h5")
    assert validation_run.final["test_size"] == 8 and validation_run.final["train_size"] == 12
    assert read_run(row["run_file"]).config["train"]["lr_by_method"]["quanta"] == sweep["lr"]
    assert "Learning rates chosen on validation (8 GLUE train rows held out" in (tmp_path / "bench" /
                                                                                 "report.md").read_text()
