"""Study plots, each written as PNG and SVG: main effects, accuracy against qubits, learning curves, scaling.

Figures are built with `matplotlib.figure.Figure` (the Agg canvas) rather than pyplot, so nothing changes
a caller's global backend and no display is needed.
"""

from __future__ import annotations

import textwrap

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hpcq.energy.bandwidth_regime import CACHE_MULTIPLE, in_regime
from hpcq.results import stats

FORMATS = ("png", "svg")
_FONT = 9


def save(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `figure` as `stem.png` and `stem.svg` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        figure.savefig(path, dpi=130, bbox_inches="tight")
        paths.append(path)
    return paths


def _panels(count: int, width: float = 3.2, height: float = 2.8) -> tuple[Figure, list]:
    columns = min(count, 4)
    rows = -(-count // columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, list(axes[:count])


def _error_bars(axis, x, table: pd.DataFrame, **style) -> None:
    low = (table["mean"] - table["ci_low"]).fillna(0).to_numpy()
    high = (table["ci_high"] - table["mean"]).fillna(0).to_numpy()
    axis.errorbar(x, table["mean"], yerr=[low, high], capsize=3, marker="o", **style)


def main_effects_plot(effects: pd.DataFrame, out_dir: Path, response: str = "test accuracy") -> list[Path]:
    """One panel per factor: mean response per level with its 95% CI, against the grand mean; a study analysed
    per task or body (`stats.SEPARATE` columns in `effects`) gets one series and one grand mean per group."""
    if effects.empty:
        return []
    factors = list(dict.fromkeys(effects["factor"]))
    keys = [key for key in stats.SEPARATE if key in effects.columns]
    groups = list(effects.groupby(keys, sort=True)) if keys else [((), effects)]
    figure, axes = _panels(len(factors), width=3.2 + 1.2 * (len(groups) > 1))
    for axis, factor in zip(axes, factors):
        # every group's levels on one axis: a group may lack some
        levels = list(dict.fromkeys(effects.loc[effects["factor"] == factor, "level"]))
        for color, (group, rows) in zip((f"C{i % 10}" for i in range(len(groups))), groups):
            table = rows[rows["factor"] == factor]
            if table.empty:
                continue
            label = ", ".join(map(str, group)) or None  # group: the tuple of the keys' values
            grand = float((table["mean"] * table["n"]).sum() / table["n"].sum())
            positions = [levels.index(level) for level in table["level"]]
            _error_bars(axis, positions, table, color=color, label=label)
            axis.axhline(grand, color=color, linestyle="--", linewidth=0.8)
        axis.set_xticks(range(len(levels)), levels, fontsize=_FONT)
        if len(groups) > 1:
            axis.legend(fontsize=_FONT - 2)
        axis.set_title(textwrap.fill(factor, 40), fontsize=_FONT + 1)
        axis.set_ylabel(f"mean {response}", fontsize=_FONT)
    figure.suptitle("Main effects (95% CI; dashed: grand mean)", fontsize=_FONT + 2)
    return save(figure, out_dir, "main_effects")


def _within(row: pd.Series) -> str:
    """'setfit, all-mpnet-base-v2 · ' when the row was selected within one task and body of several."""
    values = stats.separate_values(row)
    return ", ".join(str(v) for v in values.values()) + " · " if values else ""


def _classical_bands(axis, selection: pd.DataFrame) -> None:
    classical = selection[selection["selected"] & (selection["model_kind"] != stats.QUANTUM)]
    for (_, row), color in zip(classical.iterrows(), ("tab:orange", "tab:green", "tab:red", "tab:purple",
                                                        "tab:brown", "tab:pink")):
        axis.axhline(row["test_mean"], color=color, linewidth=1,
                     label=f"{_within(row)}{row['model_kind']} (selected)")
        if np.isfinite(row["test_ci_low"]):
            axis.axhspan(row["test_ci_low"], row["test_ci_high"], color=color, alpha=0.15)


def accuracy_vs_qubits_plot(runs: pd.DataFrame, selection: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Quantum test accuracy per qubit count (all configs, and the validation-best config), with 95% CIs,
    against the selected classical baselines."""
    trained = stats.training_runs(runs)
    quantum = trained[trained[stats.MODEL_KIND] == stats.QUANTUM]
    if quantum.empty or "model.n_qubits" not in quantum.columns:
        return []
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    axis = figure.subplots()
    marginal = []
    best = []
    for qubits, group in sorted(quantum.groupby("model.n_qubits"), key=lambda item: item[0]):
        mean, _, low, high = stats.t_interval(group[stats.RESPONSE])
        marginal.append({"x": qubits, "mean": mean, "ci_low": low, "ci_high": high})
        chosen = stats.selection_table(group.reset_index(drop=True))
        top = chosen[chosen["model_kind"] == stats.QUANTUM].iloc[0]
        best.append({"x": qubits, "mean": top["test_mean"], "ci_low": top["test_ci_low"],
                     "ci_high": top["test_ci_high"]})
    marginal, best = pd.DataFrame(marginal), pd.DataFrame(best)
    _error_bars(axis, marginal["x"] - 0.08, marginal, color="tab:blue", label="quantum, all configs")
    _error_bars(axis, best["x"] + 0.08, best, color="navy", linestyle="--",
                label="quantum, validation-best config")
    if not selection.empty:
        _classical_bands(axis, selection)
    axis.set_xlabel("qubits")
    axis.set_ylabel("test accuracy (mean, 95% CI over runs)")
    axis.legend(fontsize=_FONT - 1)
    axis.set_title("Accuracy against qubit count", fontsize=_FONT + 2)
    return save(figure, out_dir, "accuracy_vs_qubits")


def learning_curves_plot(runs: pd.DataFrame, curves: pd.DataFrame, selection: pd.DataFrame,
                         out_dir: Path) -> list[Path]:
    """Per metric, the mean curve (± sd over seeds) of each model kind's selected config."""
    if curves.empty or selection.empty:
        return []
    trained = stats.training_runs(runs)
    chosen = selection[selection["selected"]]
    # grid_* series are a classical head's hyperparameter grid, not values over training steps
    metrics = sorted(m for m in curves["metric"].unique() if not m.startswith("grid_"))
    if not metrics:
        return []
    figure, axes = _panels(len(metrics), width=4.0)
    # one colour per selected config across every panel, named once in a legend under the figure: config
    # labels run long, and a legend per panel would hide the curves
    colors = [f"C{i % 10}" for i in range(len(chosen))]
    legend: dict[str, object] = {}
    run_ids = [stats.selected_run_ids(trained, row) for _, row in chosen.iterrows()]  # once, not per panel
    for axis, metric in zip(axes, metrics):
        for color, ids, (_, row) in zip(colors, run_ids, chosen.iterrows()):
            table = curves[(curves["metric"] == metric) & curves["run_id"].isin(ids)]
            if table.empty:
                continue
            summary = table.groupby("step")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
            (line,) = axis.plot(summary.index, summary["mean"], color=color)
            axis.fill_between(summary.index, summary["mean"] - summary["std"], summary["mean"] + summary["std"],
                              color=color, alpha=0.2)
            label = textwrap.fill(f"{_within(row)}{row['model_kind']}: {row['config']}", 160)
            legend.setdefault(label, line)
        axis.set_title(metric, fontsize=_FONT + 1)
        axis.set_xlabel("step / epoch", fontsize=_FONT)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not axis.lines:  # say so rather than leave an empty frame that reads as a flat curve
            axis.text(0.5, 0.5, "no selected config recorded this curve", ha="center", va="center",
                      transform=axis.transAxes, fontsize=_FONT)
    if legend:
        figure.legend(list(legend.values()), list(legend.keys()), loc="outside lower center",
                      fontsize=_FONT - 2)
    figure.suptitle("Learning curves of the selected configs (mean ± sd over seeds)", fontsize=_FONT + 2)
    return save(figure, out_dir, "learning_curves")


SCALE_COLUMNS = ("final.n_qubits", "final.ranks", "final.time_per_pass_s")


def strong_scaling(table: pd.DataFrame) -> pd.DataFrame:
    """Strong-scaling efficiency t(n,1)/(r·t(n,r)) for each multi-rank row whose run and 1-rank partner are
    both in the memory-bound regime (`in_regime` column): below it there is no memory traffic to scale."""
    single = table.loc[table["final.ranks"] == 1, ["final.n_qubits", "final.time_per_pass_s", "in_regime"]]
    multi = table[table["final.ranks"] > 1].merge(single, on="final.n_qubits", suffixes=("", "_one_rank"))
    multi = multi[multi["in_regime"] & multi["in_regime_one_rank"]]
    return pd.DataFrame({"ranks": multi["final.ranks"], "n_qubits": multi["final.n_qubits"],
                         "efficiency": multi["final.time_per_pass_s_one_rank"]
                         / (multi["final.ranks"] * multi["final.time_per_pass_s"])})


def scaling_plot(runs: pd.DataFrame, out_dir: Path) -> list[Path]:
    """bench_scale runs: time per gate pass, achieved bandwidth (vs copy bandwidth), strong-scaling efficiency.

    Runs below the memory-bound regime (`hpcq.energy.bandwidth_regime`) are drawn hollow and get no efficiency.
    """
    if "run_kind" not in runs.columns or not set(SCALE_COLUMNS) <= set(runs.columns):
        return []
    bench = runs[runs["run_kind"] == "bench_scale"].dropna(subset=list(SCALE_COLUMNS))
    if bench.empty:
        return []
    bench = bench.assign(in_regime=in_regime(bench))
    table = (bench.groupby(["final.ranks", "final.n_qubits"])
             .agg({"final.time_per_pass_s": "mean", "in_regime": "all",
                   **{c: "mean" for c in ("final.achieved_gbps", "final.copy_gbps") if c in bench.columns}})
             .reset_index())
    figure, (time_axis, bandwidth_axis, efficiency_axis) = _panels(3, width=3.8)
    for ranks, group in table.groupby("final.ranks"):
        for axis, column in ((time_axis, "final.time_per_pass_s"), (bandwidth_axis, "final.achieved_gbps")):
            if column not in group:
                continue
            line, = axis.plot(group["final.n_qubits"], group[column], label=f"{int(ranks)} rank(s)")
            below = group[~group["in_regime"]]
            axis.plot(below["final.n_qubits"], below[column], "o", markerfacecolor="white", color=line.get_color())
            inside = group[group["in_regime"]]
            axis.plot(inside["final.n_qubits"], inside[column], "o", color=line.get_color())
    time_axis.set_yscale("log")
    if "final.copy_gbps" in table:
        copy = table.groupby("final.n_qubits")["final.copy_gbps"].mean()
        bandwidth_axis.plot(copy.index, copy.to_numpy(), color="grey", linestyle="--", label="measured copy")
    efficiency = strong_scaling(table)
    for ranks, group in efficiency.groupby("ranks"):
        efficiency_axis.plot(group["n_qubits"], group["efficiency"], marker="o", label=f"1 → {int(ranks)} ranks")
    if efficiency.empty:
        efficiency_axis.text(0.5, 0.5, "no multi-rank run in the\nmemory-bound regime:\nno efficiency to draw",
                             ha="center", va="center", transform=efficiency_axis.transAxes, fontsize=_FONT)
    for axis, title in ((time_axis, "time per gate pass [s]"), (bandwidth_axis, "achieved GB/s"),
                        (efficiency_axis, "strong-scaling efficiency")):
        axis.set_title(title, fontsize=_FONT + 1)
        axis.set_xlabel("qubits", fontsize=_FONT)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=_FONT - 1)
    figure.suptitle("State-vector scaling (bench_scale runs); hollow: state within "
                    f"{CACHE_MULTIPLE:g}x the last-level cache, overhead- or cache-bound", fontsize=_FONT + 1)
    return save(figure, out_dir, "scaling")


def reproduction_plot(heads: pd.DataFrame, published: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Test accuracy per (body, head): this study's mean with its 95% CI (filled: quantum, hollow: classical),
    and, below a rule, the numbers others published for the same protocol (crosses, ± their sd)."""
    if heads.empty:
        return []
    rows = len(heads) + len(published) + 1
    figure = Figure(figsize=(9.5, 0.28 * rows + 0.9), layout="constrained")
    axis = figure.subplots()
    labels = []
    for y, row in enumerate(heads.itertuples()):
        low = row.test_mean - row.test_ci_low if not np.isnan(row.test_ci_low) else 0
        high = row.test_ci_high - row.test_mean if not np.isnan(row.test_ci_high) else 0
        axis.errorbar(row.test_mean, y, xerr=[[low], [high]], capsize=3, marker="o", color="C0" if row.quantum
                      else "C1", markerfacecolor=None if row.quantum else "white")
        labels.append(f"{row.body} · {row.head} (n={row.n_seeds})")
    axis.axhline(len(heads), color="#999", linewidth=0.6)
    labels.append("published (theirs, not rerun)")
    for y, row in enumerate(published.itertuples(), start=len(heads) + 1):
        spread = row.sd if row.sd is not None and not pd.isna(row.sd) else 0
        axis.errorbar(row.test_accuracy, y, xerr=spread, capsize=3, marker="x", color="#555")
        labels.append(f"{row.source}: {row.body} · {row.head}")
    axis.set_yticks(range(rows), labels, fontsize=_FONT - 2)
    axis.invert_yaxis()
    axis.set_xlabel("test accuracy (9,101 sentences per seed)", fontsize=_FONT)
    axis.grid(axis="x", alpha=0.3)
    return save(figure, out_dir, "paper_protocol")
