"""Measured mode only from measurements that can carry it: each reason a bench_scale run is kept out of a GPU
parameter, the fallback to the configured values, and the provenance that `hpcq energy` and the report show."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hpcq.cli import app
from hpcq.energy.qualify import EXCHANGE, POWER, TIME, qualify
from hpcq.report.crossover_report import run_crossover
from hpcq.results.aggregate import collect_runs
from hpcq.results.plots import strong_scaling
from results_synthetic import write_bench_scale


def _runs(tmp_path, **kwargs) -> pd.DataFrame:
    write_bench_scale(tmp_path / "runs", **kwargs)
    return collect_runs(tmp_path / "runs", progress=False).runs


def _reasons(found, quantity: str) -> set[str]:
    return {r.reason for r in found.rejections if r.quantity == quantity}


def test_consistent_gpu_runs_are_used_and_reported_as_measured(tmp_path):
    write_bench_scale(tmp_path / "runs")  # 2^n above a 50 MiB L2, NVML-metered, 2-rank runs exchanging
    report = run_crossover(None, tmp_path / "out", tmp_path / "runs")
    assert report.mode == "measured" and report.gpu_side == "measured"
    assert report.base["gpu.memory_bandwidth_Bps"] == pytest.approx(20e9)
    assert report.base["gpu.bandwidth_efficiency"] == 1.0
    assert report.base["gpu.device_power_W"] == pytest.approx(30.0)
    assert report.base["gpu.nvlink_bandwidth_Bps"] == pytest.approx(5e9)
    assert report.base["gpu.network_bandwidth_Bps"] == report.config.parameters["gpu.network_bandwidth_Bps"].value
    fit = report.measurements.fits[0]
    assert fit.device == "gpu" and fit.slope == pytest.approx(1.0, abs=1e-9) and fit.qubits == [26, 27, 28, 29, 30]
    assert report.measurements.rejections == []
    summary = json.loads((tmp_path / "out" / "crossover.json").read_text())
    assert summary["headline"].startswith("Crossover (measured GPU side; QPU side assumed)")
    status = {row["parameter"]: row for row in summary["parameters"]}
    assert status["gpu.device_power_W"]["status"] == "measured"
    assert status["gpu.device_power_W"]["from"] == "runs " + ", ".join(f"scale/n{n}_r{r}.h5" for n in range(26, 31)
                                                                        for r in (1, 2))
    assert status["gpu.pue"]["status"] == "assumed" and "power usage effectiveness" in status["gpu.pue"]["from"]
    assert summary["fits"][0]["feeds_gpu_side"] is True
    roofline = run_crossover()
    assert report.crossover < roofline.crossover  # 20 GB/s at 30 W is worse per byte than an H200


def test_cpu_runs_never_feed_the_gpu_side_but_their_fit_is_reported(tmp_path):
    report = run_crossover(runs=_runs(tmp_path, device="cpu", method="rapl"))
    assert report.mode == "modelled" and report.gpu_side == "assumed"
    assert report.base == report.config.nominal()
    rejected = report.rejected()
    assert len(rejected) == 10 and set(rejected["quantity"]) == {"all GPU parameters"}
    assert rejected["reason"].str.contains("ran on cpu; the model's GPU side takes only GPU runs").all()
    cpu_fit = report.measurements.fits[0]
    assert cpu_fit.device == "cpu" and cpu_fit.not_in_regime == "" and cpu_fit.slope == pytest.approx(1.0)
    assert "CPU" in cpu_fit.describe() and report.summary()["fits"][0]["feeds_gpu_side"] is False
    assert headline_says_modelled(report)


def headline_says_modelled(report) -> bool:
    return report.summary()["headline"].startswith("Crossover (modelled: GPU side assumed")


def test_states_within_the_cache_are_not_the_regime(tmp_path):
    found = qualify(_runs(tmp_path, qubits=(10, 11, 12, 13, 14), cache_bytes=50 * 2**20))
    assert not found.overrides
    assert any("within 2x the 50 MiB last-level cache" in reason for reason in _reasons(found, TIME))
    assert any("last-level cache" in reason for reason in _reasons(found, POWER))


def test_a_run_without_a_recorded_cache_size_cannot_show_the_regime(tmp_path):
    runs = _runs(tmp_path).drop(columns=["final.cache_bytes"])
    assert any("cache size is not recorded" in reason for reason in _reasons(qualify(runs), TIME))


def test_fewer_than_three_sizes_are_no_fit(tmp_path):
    found = qualify(_runs(tmp_path, qubits=(26, 27)))
    assert "gpu.memory_bandwidth_Bps" not in found.overrides
    assert any("only 2 qubit count(s) beyond 2x the cache" in reason for reason in _reasons(found, TIME))
    assert "gpu.device_power_W" in found.overrides  # power stands on its own meter readings


def test_time_that_does_not_grow_2_to_the_n_is_not_bandwidth(tmp_path):
    found = qualify(_runs(tmp_path, overhead_s=5.0))  # a fixed 5 s per pass swamps the memory traffic
    assert "gpu.memory_bandwidth_Bps" not in found.overrides
    assert any("accepted slope 0.9-1.1" in reason for reason in _reasons(found, TIME))
    assert found.fits[0].slope < 0.9 and found.fits[0].not_in_regime


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "estimate"}, "is an estimate (CPU busy time x assumed watts), not a meter reading"),
    ({"method": "rapl"}, "meter 'rapl' does not meter a GPU"),
    ({"metered_s": 0.3}, "metered for 0.30 s"),
])
def test_power_only_from_a_gpu_meter_long_enough(tmp_path, kwargs, message):
    report = run_crossover(runs=_runs(tmp_path, **kwargs))
    assert "gpu.device_power_W" not in report.measurements.overrides
    assert any(message in reason for reason in _reasons(report.measurements, POWER))
    assert report.mode == "modelled" and report.gpu_side == "partly measured"  # bandwidth measured, power not
    assert report.summary()["headline"].startswith("Crossover (modelled: GPU side partly measured")


def test_exchange_bandwidth_only_from_runs_that_exchanged_enough(tmp_path):
    runs = _runs(tmp_path)
    silent = runs.assign(**{"final.comm_bytes": 0.0})
    assert any("exchanged nothing" in reason for reason in _reasons(qualify(silent), EXCHANGE))
    small = runs.assign(**{"final.comm_bytes": 64 * 2**10 * runs["final.exchanges"]})
    found = qualify(small)
    assert "gpu.nvlink_bandwidth_Bps" not in found.overrides
    assert any("64 KiB per exchange times latency" in reason for reason in _reasons(found, EXCHANGE))


def test_runs_without_a_device_are_left_out(tmp_path):
    runs = _runs(tmp_path).drop(columns=["device"])
    found = qualify(runs)
    assert not found.overrides and {r.quantity for r in found.rejections} == {"all GPU parameters"}


def test_cli_names_each_rejected_run_and_explains(tmp_path):
    write_bench_scale(tmp_path / "runs", qubits=(10, 11, 12), device="cpu", method="estimate")
    result = CliRunner().invoke(app, ["energy", "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                                      "--explain"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Crossover (modelled: GPU side assumed")
    for n in (10, 11, 12):
        for r in (1, 2):
            assert f"scale/n{n}_r{r}.h5: it ran on cpu" in result.output
    assert "What moves the crossover most" in result.output and "| qpu.shots | assumed |" in result.output


def test_strong_scaling_draws_no_efficiency_below_the_regime():
    table = pd.DataFrame({"final.ranks": [1, 1, 2, 2], "final.n_qubits": [14, 30, 14, 30],
                          "final.time_per_pass_s": [1e-4, 1.0, 1e-3, 0.6], "in_regime": [False, True, False, True]})
    efficiency = strong_scaling(table)
    assert efficiency["n_qubits"].tolist() == [30]
    assert efficiency["efficiency"].iloc[0] == pytest.approx(1.0 / (2 * 0.6))
    assert np.isfinite(efficiency["efficiency"]).all()
