"""The GPU-vs-QPU crossover model: gate counts, scaling laws, the crossover solver, the band, the
sensitivity table, config validation and `hpcq energy`."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hpcq.circuits import reuploading_ansatz
from hpcq.cli import app
from hpcq.energy import crossover as cx
from hpcq.energy import model
from hpcq.errors import ConfigError, DataError
from hpcq.report.crossover_report import run_crossover


@pytest.fixture(scope="module")
def config():
    return cx.load_config()


@pytest.mark.parametrize("n, layers, connectivity, reuploads", [(4, 1, 1, 1), (6, 2, 3, 2), (10, 3, 2, 4)])
def test_gate_counts_match_the_circuit_builder(n, layers, connectivity, reuploads):
    counts = reuploading_ansatz(n, layers, connectivity, reuploads).gate_counts()
    ansatz = model.Ansatz(layers, connectivity, reuploads)
    assert counts.get("cnot", 0) == ansatz.cnots(n)
    assert counts.get("ry", 0) == ansatz.single_qubit_gates(n)


def test_devices_are_the_smallest_power_of_two_that_holds_the_state(config):
    p = config.nominal()
    n = np.arange(20, 60, dtype=float)
    devices = model.devices_needed(n, p)
    usable = p["gpu.device_memory_B"] * p["gpu.usable_memory_fraction"]
    assert np.all(np.log2(devices) == np.round(np.log2(devices)))
    assert np.all(devices * usable >= model.state_bytes(n, p))
    assert np.all((devices == 1) | (devices / 2 * usable < model.state_bytes(n, p)))


def test_gpu_energy_doubles_per_qubit_and_qpu_energy_is_linear(config):
    p = {**config.nominal(), "qpu.power_per_qubit_W": 0.0}
    n = np.arange(36, 66, dtype=float)
    gpu = model.gpu_energy_J(n, config.ansatz, p)
    ratio = gpu[1:] / gpu[:-1]
    assert np.all(ratio > 1.9) and np.all(ratio < 2.3)  # 2^n · (gate count ∝ n)
    qpu = model.qpu_energy_J(n, config.ansatz, p)
    assert np.allclose(np.diff(qpu, 2), 0.0, atol=1e-6 * qpu.max())


def test_crossover_solver():
    n = np.arange(10, 20, dtype=float)
    gpu = 2.0 ** (n - 10)  # 1 .. 512
    integer, fraction = model.crossover(n, gpu[None, :], np.full((1, n.size), 100.0))
    assert integer[0] == 17  # 2^7 = 128 ≥ 100 first at n = 17
    assert fraction[0] == pytest.approx(16 + np.log(100 / 64) / np.log(2))
    never, _ = model.crossover(n, gpu[None, :], np.full((1, n.size), 1e6))
    start, _ = model.crossover(n, gpu[None, :], np.full((1, n.size), 0.5))
    assert np.isnan(never[0]) and start[0] == 10


def test_nominal_crossover_is_where_the_curves_cross(config):
    report = run_crossover()
    gpu, qpu = cx.energies(config, config.nominal())
    i = int(np.nonzero(config.qubits == report.crossover)[0][0])
    assert qpu[i] <= gpu[i] and qpu[i - 1] > gpu[i - 1]
    assert report.band[0] <= report.crossover <= report.band[1]
    assert report.mode == "modelled" and report.never_fraction < 0.5


def test_crossover_moves_the_right_way(config):
    base = config.nominal()

    def at(name, value):
        return cx.crossover_of(config, {**base, name: value})[1][0]

    assert at("qpu.shots", 100) < at("qpu.shots", 10_000)
    assert at("qpu.system_power_W", 5e3) < at("qpu.system_power_W", 1e5)
    assert at("gpu.bandwidth_efficiency", 0.4) < at("gpu.bandwidth_efficiency", 0.9)
    assert at("gpu.precision_bytes", 16) < at("gpu.precision_bytes", 8)


def test_value_for_target_reproduces_the_target(config):
    table = cx.sensitivity(config, config.nominal()).set_index("parameter")
    base = config.nominal()
    for target in (34, 46):
        value = table.loc["qpu.shots", f"value_for_{target}"]
        assert cx.crossover_of(config, {**base, "qpu.shots": value})[1][0] == pytest.approx(target, abs=0.05)
    assert table["swing"].is_monotonic_decreasing


def test_shipped_scenarios_explain_both_published_crossovers(config):
    """The shipped assumption sets are meant to show which assumptions land near 46 and near 34."""
    report = run_crossover()
    found = report.scenarios["crossover_fractional"].to_numpy()
    for target in config.targets:
        assert np.min(np.abs(found - target["qubits"])) < 1.0, target


def test_monte_carlo_band_is_reproducible(config):
    first, second = run_crossover(), run_crossover()
    assert first.band == second.band
    assert np.isfinite(first.band).all() and first.band[0] < first.band[1]


def _write_config(tmp_path, mutate):
    raw = yaml.safe_load(resources.files("hpcq.energy").joinpath(cx.DEFAULT_CONFIG).read_text())
    mutate(raw)
    path = tmp_path / "energy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: raw["qpu"]["shots"].pop("source"), "qpu.shots.*source"),
    (lambda raw: raw["gpu"]["pue"].update(value=3.0), "outside its range"),
    (lambda raw: raw["gpu"].pop("pue"), "lacks \\['pue'\\]"),
    (lambda raw: raw["scenarios"].append({"name": "x", "set": {"qpu.shotz": 1}}), "unknown parameter 'qpu.shotz'"),
    (lambda raw: raw["qpu"]["power_per_qubit_W"].update(distribution="loguniform"), "log-uniform range needs low > 0"),
    (lambda raw: raw.update(qubits={"min": 30, "max": 20}), "must exceed"),
    (lambda raw: raw["qubits"].update(maxx=80), r"qubits has unknown key\(s\) \['maxx'\]"),
    (lambda raw: raw.update(montecarlo={"samples": 10}), r"unknown key\(s\) \['montecarlo'\]"),
    (lambda raw: raw["gpu"]["pue"].update(vaule=1.2), r"'gpu.pue' has unknown key\(s\) \['vaule'\]"),
    (lambda raw: raw["gpu"]["network_bandwidth_Bps"].update(value=-5e10, range=[-6e10, 1e11],
                                                           distribution="uniform"),
     "'gpu.network_bandwidth_Bps': -5e\\+10 is not physical; it must be > 0"),
    (lambda raw: raw["gpu"]["device_memory_B"].update(value=0), "'gpu.device_memory_B': 0 is not physical"),
    (lambda raw: raw["gpu"]["bandwidth_efficiency"].update(value=1.5, range=[0.4, 2.0]), "must be > 0 and <= 1"),
    (lambda raw: raw["scenarios"].append({"name": "x", "set": {"gpu.pue": 0.5}}), "'gpu.pue': 0.5 is not physical"),
])
def test_bad_configs_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ConfigError, match=message):
        cx.load_config(_write_config(tmp_path, mutate))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cx.load_config(tmp_path / "none.yaml")


def test_measured_mode_without_bench_runs_says_what_to_do(tmp_path):
    from results_synthetic import write_study

    write_study(tmp_path / "runs", seeds=(0,))
    with pytest.raises(DataError, match="hpcq bench scale"):
        run_crossover(None, None, tmp_path / "runs")


def test_cli_prints_crossover_and_writes_outputs(tmp_path):
    result = CliRunner().invoke(app, ["energy", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "crossover" in result.output and "band" in result.output
    for name in ("energy_vs_qubits.png", "energy_vs_qubits.svg", "sensitivity.csv", "sensitivity.md",
                 "scenarios.csv", "energy_curves.csv", "crossover.json"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "crossover.json").read_text())
    assert summary["band"][0] <= summary["crossover_qubits"] <= summary["band"][1]
    markdown = (tmp_path / "sensitivity.md").read_text()
    assert "value_for_46" in markdown and "value_for_34" in markdown


def test_energy_config_with_a_duplicate_key_is_refused(tmp_path):
    text = resources.files("hpcq.energy").joinpath(cx.DEFAULT_CONFIG).read_text()
    path = tmp_path / "energy.yaml"
    path.write_text(text.replace("qubits: {min: 4, max: 70}", "qubits: {min: 4, max: 70, max: 80}"))
    with pytest.raises(ConfigError, match="max"):
        cx.load_config(path)
