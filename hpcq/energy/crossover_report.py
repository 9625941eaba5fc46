"""Run the crossover model end to end and write what `hpcq energy` promises: the crossover with its
band (printed and in crossover.json), energy_vs_qubits.png/.svg, sensitivity.csv/.md, energy_curves.csv."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpcq.energy import crossover as cx
from hpcq.energy import model
from hpcq.results.markdown import markdown_table

_COLORS = {"gpu": "tab:green", "qpu": "tab:purple"}


@dataclass
class CrossoverReport:
    config: cx.CrossoverConfig
    base: dict[str, float]
    mode: str                       # "roofline" or "measured"
    crossover: float                # first integer qubit count where the QPU wins (NaN: never in range)
    crossover_fractional: float
    band: tuple[float, float]       # central `config.interval` of the Monte Carlo crossovers
    never_fraction: float           # share of draws in which the QPU never wins in the qubit range
    sensitivity: pd.DataFrame
    scenarios: pd.DataFrame
    curves: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"mode": self.mode, "crossover_qubits": self.crossover, "crossover_fractional": self.crossover_fractional,
                "band": list(self.band), "band_probability": self.config.interval,
                "never_in_range_fraction": self.never_fraction, "samples": self.config.samples,
                "config": self.config.origin, "notes": self.notes,
                "scenarios": self.scenarios[["scenario", "crossover_qubits", "crossover_fractional"]].to_dict("records")}


def _band(values: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - interval) / 2 * 100
    return np.nanpercentile(values, tail, axis=0), np.nanpercentile(values, 100 - tail, axis=0)


def scenario_drivers(config: cx.CrossoverConfig, base: dict[str, float], changes: dict[str, float]) -> str:
    """For a scenario, how far the crossover moves back when each of its changes alone is undone."""
    full = float(cx.crossover_of(config, {**base, **changes})[1][0])
    shifts = []
    for name in changes:
        without = {k: v for k, v in changes.items() if k != name}
        shifts.append((name, full - float(cx.crossover_of(config, {**base, **without})[1][0])))
    shifts.sort(key=lambda item: -abs(item[1]))
    return "; ".join(f"{name} {shift:+.1f}" for name, shift in shifts if np.isfinite(shift))


def run_crossover(config_path: Path | None = None, out_dir: Path | None = None,
                  results_dir: Path | None = None, *, runs: pd.DataFrame | None = None) -> CrossoverReport:
    """Evaluate the model and write its outputs to `out_dir` (when given).

    The GPU side is fitted from bench_scale runs when `results_dir` (a results or aggregate folder) or an
    aggregated `runs` table is given, and is the roofline of the config otherwise.
    """
    config = cx.load_config(config_path)
    base, mode, notes = config.nominal(), "roofline", []
    fixed: set[str] = set()
    if results_dir is not None and runs is None:
        from hpcq.results.aggregate import runs_from

        runs = runs_from(Path(results_dir), progress=False).runs
    if runs is not None:
        measured = cx.fit_measured_gpu(runs, config)
        base.update(measured.overrides)
        fixed = set(measured.overrides)
        mode = "measured"
        notes = measured.notes + ["device memory, devices per node and precision stay as configured; scenarios "
                                  "do not override measured values"]
    n = config.qubits
    gpu, qpu = cx.energies(config, base)
    integer, fraction = model.crossover(n, gpu[None, :], qpu[None, :])
    draws = cx.sample_parameters(config, base, fixed)
    gpu_draws, qpu_draws = (np.broadcast_to(e, (config.samples, len(n))) for e in cx.energies(config, draws))
    mc_integer, _ = model.crossover(n, gpu_draws, qpu_draws)
    low, high = _band(mc_integer[None, :].T, config.interval) if np.isfinite(mc_integer).any() else (np.nan, np.nan)
    gpu_low, gpu_high = _band(gpu_draws, config.interval)
    qpu_low, qpu_high = _band(qpu_draws, config.interval)
    curves = pd.DataFrame({"qubits": n.astype(int), "gpu_devices": model.devices_needed(n, base),
                           "gpu_J": gpu, "gpu_J_low": gpu_low, "gpu_J_high": gpu_high,
                           "qpu_J": qpu, "qpu_J_low": qpu_low, "qpu_J_high": qpu_high})
    scenarios = cx.scenario_table(config, base, fixed)
    scenarios["drivers"] = [scenario_drivers(config, base, cx.scenario_changes(s, fixed)) for s in config.scenarios]
    report = CrossoverReport(
        config=config, base=base, mode=mode, crossover=float(integer[0]), crossover_fractional=float(fraction[0]),
        band=(float(np.ravel(low)[0]), float(np.ravel(high)[0])), never_fraction=float(np.isnan(mc_integer).mean()),
        sensitivity=cx.sensitivity(config, base), scenarios=scenarios, curves=curves, notes=notes)
    if out_dir is not None:
        write_outputs(report, Path(out_dir))
    return report


def energy_plot(report: CrossoverReport, out_dir: Path) -> list[Path]:
    from hpcq.results.plots import save

    curves, config = report.curves, report.config
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    axis = figure.subplots()
    for side, label in (("gpu", f"GPU state vector ({report.mode})"), ("qpu", "QPU (trapped-ion model)")):
        axis.semilogy(curves["qubits"], curves[f"{side}_J"], color=_COLORS[side], label=label)
        axis.fill_between(curves["qubits"], curves[f"{side}_J_low"], curves[f"{side}_J_high"], color=_COLORS[side],
                          alpha=0.15, label=f"{config.interval:.0%} band")
    if np.isfinite(report.crossover_fractional):
        axis.axvline(report.crossover_fractional, color="black", linewidth=1.2,
                     label=f"model crossover {report.crossover_fractional:.1f} (first win: {report.crossover:.0f})")
    if all(np.isfinite(report.band)):
        axis.axvspan(report.band[0], report.band[1], color="grey", alpha=0.15,
                     label=f"crossover {config.interval:.0%} band {report.band[0]:.0f}-{report.band[1]:.0f}")
    for target, style in zip(config.targets, (":", "-.", "--")):
        axis.axvline(target["qubits"], color="tab:red", linestyle=style, linewidth=1,
                     label=f"published: {target.get('label', target['qubits'])}")
    axis.set_ylim(top=float(curves["qpu_J_high"].max()) * 1e4)
    axis.set_xlabel("qubits")
    axis.set_ylabel("energy per inference [J]")
    axis.set_title("GPU vs QPU energy per inference of the quantum head", fontsize=10)
    axis.legend(fontsize=7, loc="upper left")
    return save(figure, out_dir, "energy_vs_qubits")


def sensitivity_markdown(report: CrossoverReport) -> str:
    """The sensitivity note: crossover and band, scenarios with their drivers, one-at-a-time swings."""
    targets = ", ".join(f"{t['qubits']} ({t['source']})" for t in report.config.targets)
    lines = [
        "# GPU-vs-QPU energy crossover: sensitivity",
        "",
        f"Model: {report.mode} GPU side, config `{report.config.origin}`. Circuit: re-uploading ansatz "
        f"L={report.config.ansatz.layers}, C={report.config.ansatz.connectivity}, N={report.config.ansatz.reuploads}.",
        f"Crossover: the QPU first uses no more energy per inference at **{report.crossover:.0f} qubits** "
        f"(continuous crossing {report.crossover_fractional:.1f}); {report.config.interval:.0%} band over "
        f"{report.config.samples} Monte Carlo draws: **{report.band[0]:.0f}-{report.band[1]:.0f}**"
        + (f" (QPU never wins below {int(report.config.qubits[-1])} qubits in {report.never_fraction:.1%} of draws)"
           if report.never_fraction > 0 else "") + ".",
        f"Published values to explain: {targets}.",
        *[f"- {note}" for note in report.notes],
        "",
        "## Assumption sets (scenarios)",
        "",
        "`drivers`: how far the crossover moves when one change of the scenario alone is undone (largest first).",
        "",
        markdown_table(report.scenarios[["scenario", "crossover_qubits", "crossover_fractional", "drivers", "changes",
                                          "description"]]),
        "",
        "## One parameter at a time",
        "",
        "Each parameter at the ends of its range with all others at their values; `value_for_T` is the value "
        "that alone would move the crossover to T qubits (n/a: not reachable within 100x of the range).",
        "",
        markdown_table(report.sensitivity),
        "",
    ]
    return "\n".join(lines)


def write_outputs(report: CrossoverReport, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"sensitivity.csv": out_dir / "sensitivity.csv", "sensitivity.md": out_dir / "sensitivity.md",
             "scenarios.csv": out_dir / "scenarios.csv", "energy_curves.csv": out_dir / "energy_curves.csv",
             "crossover.json": out_dir / "crossover.json"}
    report.sensitivity.to_csv(files["sensitivity.csv"], index=False)
    report.scenarios.to_csv(files["scenarios.csv"], index=False)
    report.curves.to_csv(files["energy_curves.csv"], index=False)
    files["sensitivity.md"].write_text(sensitivity_markdown(report))
    files["crossover.json"].write_text(json.dumps(report.summary(), indent=2, default=float) + "\n")
    for path in energy_plot(report, out_dir):
        files[path.name] = path
    report.files = files


def render(report: CrossoverReport) -> None:
    """What `hpcq energy` prints."""
    print(f"GPU-vs-QPU crossover ({report.mode} GPU side): {report.crossover:.0f} qubits "
          f"(continuous {report.crossover_fractional:.1f}); {report.config.interval:.0%} band "
          f"{report.band[0]:.0f}-{report.band[1]:.0f} over {report.config.samples} draws")
    for note in report.notes:
        print(f"  {note}")
    for row in report.scenarios.itertuples():
        print(f"  scenario {row.scenario!r}: {row.crossover_qubits:.0f} qubits ({row.crossover_fractional:.1f})")
    top = report.sensitivity.head(3)
    print("  largest swings: " + ", ".join(f"{r.parameter} {r.crossover_at_low:.1f}->{r.crossover_at_high:.1f}"
                                           for r in top.itertuples()))
    if report.files:
        print(f"wrote {', '.join(sorted(report.files))} to {next(iter(report.files.values())).parent}")
