"""Run the crossover model end to end and write what `hpcq energy` promises: the crossover with its
band (printed and in crossover.json), energy_vs_qubits.png/.svg, sensitivity.csv/.md, energy_curves.csv.

Every parameter is reported as measured (with the bench_scale runs behind it) or assumed (with its source),
every bench_scale run that could not carry a parameter with the reason, and the crossover is called
*measured* only when the decisive GPU parameters (`DECISIVE`) were measured; otherwise it is *modelled*.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpcq.energy import crossover as cx
from hpcq.energy import model
from hpcq.energy.qualify import Measurements, qualify
from hpcq.results.aggregate import runs_from
from hpcq.results.markdown import markdown_table
from hpcq.results.plots import save

_COLORS = {"gpu": "tab:green", "qpu": "tab:purple"}
# The GPU parameters whose measurement makes the GPU side a measurement: time per pass (through the
# bandwidth) and power. Without both, the crossover is the model's, whatever else was measured.
DECISIVE = ("gpu.memory_bandwidth_Bps", "gpu.device_power_W")
EXPLAIN_ROWS = 6


@dataclass
class CrossoverReport:
    config: cx.CrossoverConfig
    base: dict[str, float]
    mode: str                       # "measured" (DECISIVE parameters measured) or "modelled"
    crossover: float                # first integer qubit count where the QPU wins (NaN: never in range)
    crossover_fractional: float
    band: tuple[float, float]       # central `config.interval` of the Monte Carlo crossovers
    never_fraction: float           # share of draws in which the QPU never wins in the qubit range
    sensitivity: pd.DataFrame
    scenarios: pd.DataFrame
    curves: pd.DataFrame
    measurements: Measurements = field(default_factory=Measurements)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def gpu_side(self) -> str:
        measured = [name for name in self.measurements.overrides if name.startswith("gpu.")]
        return "measured" if self.mode == "measured" else "partly measured" if measured else "assumed"

    def provenance(self) -> pd.DataFrame:
        """Each parameter's value and whether it was measured (from which runs) or assumed (from what source)."""
        rows = []
        for name, parameter in self.config.parameters.items():
            runs = self.measurements.runs_of.get(name)
            rows.append({"parameter": name, "value": self.base[name], "status": "measured" if runs else "assumed",
                         "from": f"runs {', '.join(runs)}" if runs else parameter.source})
        return pd.DataFrame(rows)

    def rejected(self) -> pd.DataFrame:
        return pd.DataFrame([vars(r) for r in self.measurements.rejections], columns=["run", "quantity", "reason"])

    def explain(self, rows: int = EXPLAIN_ROWS) -> pd.DataFrame:
        """The inputs that move the crossover most (one at a time over their ranges), measured or assumed."""
        columns = ["parameter", "status", "value", "crossover_at_low", "crossover_at_high", "swing"]
        return self.sensitivity[columns].head(rows)

    def summary(self) -> dict:
        return {"mode": self.mode, "gpu_side": self.gpu_side, "qpu_side": "assumed",
                "headline": headline(self), "crossover_qubits": self.crossover,
                "crossover_fractional": self.crossover_fractional,
                "band": list(self.band), "band_probability": self.config.interval,
                "never_in_range_fraction": self.never_fraction, "samples": self.config.samples,
                "config": self.config.origin, "notes": self.notes,
                "parameters": self.provenance().to_dict("records"),
                "rejected_runs": self.rejected().to_dict("records"),
                "fits": [{**vars(fit), "description": fit.describe(),
                          "feeds_gpu_side": fit.device == "gpu" and not fit.not_in_regime}
                         for fit in self.measurements.fits],
                "explain": self.explain().to_dict("records"),
                "scenarios": self.scenarios[["scenario", "crossover_qubits", "crossover_fractional"]].to_dict("records")}


def headline(report: CrossoverReport) -> str:
    """The one sentence a reader takes home, saying what of it was measured."""
    config = report.config
    basis = ("measured GPU side" if report.mode == "measured"
             else f"modelled: GPU side {report.gpu_side}, from config {config.origin}")
    return (f"Crossover ({basis}; QPU side assumed): the QPU first uses no more energy per inference at "
            f"{report.crossover:.0f} qubits (continuous {report.crossover_fractional:.1f}); {config.interval:.0%} "
            f"band {report.band[0]:.0f}-{report.band[1]:.0f} over {config.samples} Monte Carlo draws")


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

    With `results_dir` (a results or aggregate folder) or an aggregated `runs` table, the GPU parameters that
    qualifying bench_scale runs can carry replace the configured ones (`hpcq.energy.qualify`); every other
    parameter keeps its configured value.
    """
    config = cx.load_config(config_path)
    base, notes = config.nominal(), []
    if results_dir is not None and runs is None:
        runs = runs_from(Path(results_dir), progress=False).runs
    measurements = qualify(runs) if runs is not None else Measurements()
    base.update(measurements.overrides)
    fixed = set(measurements.overrides)
    mode = "measured" if set(DECISIVE) <= fixed else "modelled"
    if runs is not None and not fixed:
        notes.append("no bench_scale run can carry a GPU parameter (rejected runs listed with the reason): "
                     "every GPU parameter keeps its configured value")
    if fixed:
        notes.append("measured: " + ", ".join(sorted(fixed)) + "; the other parameters keep their configured values, "
                     "and scenarios do not override measured ones")
    notes += [fit.describe() for fit in measurements.fits]
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
    sensitivity = cx.sensitivity(config, base)
    sensitivity.insert(1, "status", ["measured" if name in fixed else "assumed" for name in sensitivity["parameter"]])
    report = CrossoverReport(
        config=config, base=base, mode=mode, crossover=float(integer[0]), crossover_fractional=float(fraction[0]),
        band=(float(np.ravel(low)[0]), float(np.ravel(high)[0])), never_fraction=float(np.isnan(mc_integer).mean()),
        sensitivity=sensitivity, scenarios=scenarios, curves=curves, measurements=measurements, notes=notes)
    if out_dir is not None:
        write_outputs(report, Path(out_dir))
    return report


def energy_plot(report: CrossoverReport, out_dir: Path) -> list[Path]:
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
        f"**{headline(report)}**"
        + (f" (QPU never wins below {int(report.config.qubits[-1])} qubits in {report.never_fraction:.1%} of draws)"
           if report.never_fraction > 0 else "") + ".",
        f"Circuit: re-uploading ansatz L={report.config.ansatz.layers}, C={report.config.ansatz.connectivity}, "
        f"N={report.config.ansatz.reuploads}. Published values to explain: {targets}.",
        *[f"- {note}" for note in report.notes],
        "",
        "## What moves the crossover most",
        "",
        markdown_table(report.explain()),
        "",
        "## Parameters: measured or assumed",
        "",
        markdown_table(report.provenance()),
        "",
        *(["## bench_scale runs that cannot carry a parameter", "", markdown_table(report.rejected()), ""]
          if report.measurements.rejections else []),
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


def render(report: CrossoverReport, explain: bool = False) -> None:
    """What `hpcq energy` prints: the headline, what was measured and what was left out, the scenarios, and
    (with `explain`) the inputs that move the crossover most."""
    print(headline(report))
    for note in report.notes:
        print(f"  {note}")
    for rejection in report.measurements.rejections:
        print(f"  not used for {rejection.quantity}: {rejection.run}: {rejection.reason}")
    for row in report.scenarios.itertuples():
        print(f"  scenario {row.scenario!r}: {row.crossover_qubits:.0f} qubits ({row.crossover_fractional:.1f})")
    if explain:
        print("What moves the crossover most (each input alone over its range, the others at their values):")
        print(markdown_table(report.explain()))
    else:
        top = report.sensitivity.head(3)
        print("  largest swings: " + ", ".join(f"{r.parameter} {r.crossover_at_low:.1f}->{r.crossover_at_high:.1f}"
                                               for r in top.itertuples()) + " (--explain for more)")
    if report.files:
        print(f"wrote {', '.join(sorted(report.files))} to {next(iter(report.files.values())).parent}")
