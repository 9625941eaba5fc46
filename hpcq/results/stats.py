"""Screening statistics the seed paper lacked: main effects with 95% CIs, an ANOVA, the paired
quantum-minus-classical difference across seeds, and an explicit model-selection rule.

Inputs are rows of the aggregated table (`hpcq.results.aggregate`) with `run_kind == "train"`.
Quantum runs are those with `model.kind == "quantum"`; every other `model.kind` is a classical baseline.
A *config* is a run's design columns (its flattened config without seeds, paths and per-run identifiers);
its seeds are replicates. When the table holds several tasks (`task`) or bodies (`data.model`), each is analysed
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from hpcq.results.aggregate import config_columns

RESPONSE = "final.test_accuracy"
VALIDATION = "final.val_accuracy"
MODEL_KIND = "model.kind"
QUANTUM = "quantum"
FACTORS = {
    "qubits": "model.n_qubits",
    "layers": "model.layers",
    "connectivity": "model.connectivity",
    "reuploads": "model.reuploads",
    "learning rate": "train.lr",
    "encoders": "model.encoders",
    "encoder qubits": "model.encoder_qubits",
    "measured qubits": "model.measured",
    "shots": "model.shots",
    "noise": "model.noise",
}
SELECTION_RULE = (
    "For each model kind, the selected config is the one with the highest mean validation accuracy over its "
    "seeds (ties: fewer trainable parameters, then name); its test accuracy is what is reported. Test data "
    "never take part in selection."
)
_NOT_DESIGN_NAMES = {"seed", "seeds", "out", "output", "out_dir", "output_dir", "path", "results", "results_dir",
                     "checkpoint", "run_name", "run_id", "data_root", "cache_dir", "device", "num_workers"}
CONFIDENCE = 0.95
SEPARATE = ("task", "data.model")  # analysed one value at a time: a head's task, and the body it reads
TABLE_FILES = {"main_effects": "main_effects.csv", "anova": "anova.csv", "selection": "selection.csv",
               "paired": "paired_differences.csv"}


@dataclass
class ScreeningResult:
    main_effects: pd.DataFrame
    anova: pd.DataFrame
    selection: pd.DataFrame
    paired: pd.DataFrame
    rule: str = SELECTION_RULE

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"main_effects": self.main_effects, "anova": self.anova, "selection": self.selection,
                "paired": self.paired}


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of scipy's Student-t interval for the mean; NaN bounds with fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (np.nan,) * 4
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan, np.nan
    sd = float(values.std(ddof=1))
    if sd == 0:
        return mean, sd, mean, mean  # scipy returns NaN bounds for a zero scale; the interval is the point
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=mean, scale=scipy_stats.sem(values))
    return mean, sd, float(low), float(high)


def level_label(value: object) -> str:
    """A factor level as text: None/NaN → "none", 3.0 → "3", 0.01 → "0.01"."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "none"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def _level_sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def design_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns that define a config: not seeds, paths, devices or per-run identifiers."""
    columns = []
    for column in config_columns(runs):
        last = column.rsplit(".", 1)[-1]
        if last in _NOT_DESIGN_NAMES or last.endswith(("_dir", "_path", "_seed")):
            continue
        values = runs[column].dropna()
        if len(runs) > 1 and values.map(lambda v: isinstance(v, str)).all() and values.nunique() == len(runs):
            continue  # a distinct string per run is an identifier, not a factor
        columns.append(column)
    return columns


def factor_levels(runs: pd.DataFrame, column: str) -> pd.Series:
    """Level labels of one factor; a nested factor (e.g. `model.noise.kind`, `.p`) is joined into one label."""
    nested = [c for c in runs.columns if c.startswith(column + ".")]
    if column in runs.columns and not nested:
        return runs[column].map(level_label)
    parts = ([column] if column in runs.columns else []) + nested
    return runs[parts].apply(
        lambda row: ", ".join(f"{c.rsplit('.', 1)[-1]}={level_label(row[c])}" for c in parts
                              if level_label(row[c]) != "none") or "none", axis=1)


def varying_factors(runs: pd.DataFrame) -> dict[str, pd.Series]:
    """The known factors present in `runs` with at least two levels, as label series."""
    found = {}
    for name, column in FACTORS.items():
        if column in runs.columns or any(c.startswith(column + ".") for c in runs.columns):
            levels = factor_levels(runs, column)
            if levels.nunique() > 1:
                found[name] = levels
    return found


def aliased_groups(factors: dict[str, pd.Series]) -> dict[str, list[str]]:
    """Factors that vary together (each level of one always meets the same level of the other, as when a study
    compares two whole configs) are one factor to any test: grouped under `a = b = …`, the first one's levels
    standing for all. Reported apart, each would claim the same effect as its own."""
    groups: list[list[str]] = []
    for name, levels in factors.items():
        for group in groups:
            lead = factors[group[0]]
            pairs = pd.DataFrame({"lead": lead.to_numpy(), "other": levels.to_numpy()}).drop_duplicates()
            if len(pairs) == lead.nunique() == levels.nunique():
                group.append(name)
                break
        else:
            groups.append([name])
    return {" = ".join(group): group for group in groups}


def _distinct_factors(runs: pd.DataFrame, response: str) -> dict[str, tuple[pd.Series, str]]:
    """Varying factors with aliased ones merged: name → (level labels, the config columns behind it)."""
    factors = varying_factors(runs) if response in runs.columns else {}
    return {name: (factors[members[0]], ", ".join(FACTORS[m] for m in members))
            for name, members in aliased_groups(factors).items()}


def main_effects(runs: pd.DataFrame, response: str = RESPONSE) -> pd.DataFrame:
    """Marginal mean response per level of each varying factor (aliased factors as one), its 95% CI, and its
    effect vs the grand mean."""
    rows = []
    factors = _distinct_factors(runs, response)
    grand = float(runs[response].mean()) if factors else np.nan
    for factor, (levels, columns) in factors.items():
        for level in sorted(levels.unique(), key=_level_sort_key):
            values = runs.loc[levels == level, response].to_numpy(dtype=float)
            mean, sd, low, high = t_interval(values)
            rows.append({"factor": factor, "column": columns, "level": level, "n": len(values),
                         "mean": mean, "sd": sd, "ci_low": low, "ci_high": high, "effect": mean - grand})
    return pd.DataFrame(rows, columns=["factor", "column", "level", "n", "mean", "sd", "ci_low", "ci_high",
                                       "effect"])


PARTIAL_ETA_SQ = ("partial eta squared: SS_term / (SS_term + SS_residual), from type-II sums of squares (which "
                  "need not add up to the total with unbalanced or correlated factors, so plain eta squared "
                  "would not be a share of anything)")


def anova(runs: pd.DataFrame, response: str = RESPONSE) -> pd.DataFrame:
    """Type-II ANOVA of the response on all varying factors (main effects, categorical; aliased factors as one
    term), via statsmodels, with each term's partial eta squared (`PARTIAL_ETA_SQ`). A design whose factors
    are still confounded after that (rank-deficient) gets a note instead of numbers: its sums of squares
    would be arbitrary, and its F tests read as findings."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    columns = ["term", "sum_sq", "df", "F", "p_value", "partial_eta_sq", "note"]
    factors = {name: levels for name, (levels, _) in _distinct_factors(runs, response).items()}
    if not factors:
        return pd.DataFrame([{"term": "", "note": "no factor varies: nothing to test"}], columns=columns)
    names = {factor: f"f{i}" for i, factor in enumerate(factors)}
    frame = pd.DataFrame({names[f]: levels.to_numpy() for f, levels in factors.items()})
    frame["y"] = runs[response].to_numpy(dtype=float)
    frame = frame.dropna(subset=["y"])
    n_params = 1 + sum(frame[name].nunique() - 1 for name in names.values())
    if len(frame) <= n_params:
        return pd.DataFrame([{"term": "", "note": f"{len(frame)} runs cannot fit {n_params} parameters: "
                                                  "add seeds or configs"}], columns=columns)
    model = smf.ols("y ~ " + " + ".join(f"C({name})" for name in names.values()), data=frame)
    rank, width = np.linalg.matrix_rank(model.exog), model.exog.shape[1]  # before fitting, which would warn
    if rank < width:
        note = (f"the factors {', '.join(factors)} are confounded (design rank {rank} of {width}): no term "
                "can be tested apart; vary them independently")
        return pd.DataFrame([{"term": "", "note": note}], columns=columns)
    table = anova_lm(model.fit(), typ=2)
    residual = float(table.loc["Residual", "sum_sq"])
    partial = (table["sum_sq"] / (table["sum_sq"] + residual)).where(table.index != "Residual")
    labels = {f"C({name})": factor for factor, name in names.items()}
    return pd.DataFrame({
        "term": [labels.get(term, term) for term in table.index],
        "sum_sq": table["sum_sq"].to_numpy(),
        "df": table["df"].to_numpy(),
        "F": table["F"].to_numpy(),
        "p_value": table["PR(>F)"].to_numpy(),
        "partial_eta_sq": partial.to_numpy(),
        "note": "",
    }, columns=columns)


def config_labels(runs: pd.DataFrame, design: list[str]) -> pd.Series:
    """A readable name per run's config: the design columns that vary within its model kind."""
    labels = pd.Series("", index=runs.index, dtype=object)
    for kind, group in runs.groupby(MODEL_KIND, dropna=False):
        varying = [c for c in design if c != MODEL_KIND and group[c].map(level_label).nunique() > 1]
        labels[group.index] = group.apply(
            lambda row: ", ".join(f"{c.rsplit('.', 1)[-1]}={level_label(row[c])}" for c in varying) or "default",
            axis=1)
    return labels


def selection_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model kind, config): seeds, validation and test mean with CI, and whether it is selected."""
    design = design_columns(runs)
    runs = runs.assign(_config=config_labels(runs, design))
    rows = []
    for (kind, config), group in runs.groupby([MODEL_KIND, "_config"], dropna=False):
        val_mean, val_sd, _, _ = t_interval(group[VALIDATION]) if VALIDATION in group else (np.nan,) * 4
        test_mean, test_sd, test_low, test_high = t_interval(group[RESPONSE])
        params = group["final.n_trainable_params"].mean() if "final.n_trainable_params" in group else np.nan
        size = group["final.test_size"].mean() if "final.test_size" in group else np.nan
        rows.append({"model_kind": kind, "config": config, "n_seeds": len(group), "val_mean": val_mean,
                     "val_sd": val_sd, "test_mean": test_mean, "test_sd": test_sd, "test_ci_low": test_low,
                     "test_ci_high": test_high, "n_trainable_params": params,
                     "test_se_one_run": np.sqrt(test_mean * (1 - test_mean) / size) if size > 0 else np.nan})
    table = pd.DataFrame(rows)
    ranking = table.sort_values(["model_kind", "val_mean", "n_trainable_params", "config"],
                                ascending=[True, False, True, True], na_position="last")
    table["selected"] = False
    table.loc[ranking.groupby("model_kind").head(1).index, "selected"] = True
    return table.sort_values(["model_kind", "val_mean"], ascending=[True, False]).reset_index(drop=True)


def paired_differences(runs: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """Selected quantum config minus each classical kind's selected config, paired by seed, with a 95% CI."""
    columns = ["quantum_config", "classical_kind", "classical_config", "n_pairs", "mean_diff", "sd_diff",
               "ci_low", "ci_high", "p_value", "note"]
    chosen = selection[selection["selected"]]
    if QUANTUM not in set(chosen["model_kind"]) or "seed" not in runs.columns:
        return pd.DataFrame([{"note": "needs quantum runs, classical runs and a seed column"}], columns=columns)
    labels = config_labels(runs, design_columns(runs))

    def per_seed(kind: str, config: str) -> pd.Series:
        mask = (runs[MODEL_KIND] == kind) & (labels == config)
        return runs[mask].groupby("seed")[RESPONSE].mean()

    quantum_config = chosen.loc[chosen["model_kind"] == QUANTUM, "config"].iloc[0]
    quantum = per_seed(QUANTUM, quantum_config)
    rows = [{"quantum_config": quantum_config, "classical_kind": row.model_kind, "classical_config": row.config,
             **paired_difference(quantum, per_seed(row.model_kind, row.config))}
            for row in chosen[chosen["model_kind"] != QUANTUM].itertuples()]
    return pd.DataFrame(rows, columns=columns)


def paired_difference(first: pd.Series, second: pd.Series) -> dict[str, float | int | str]:
    """`first` − `second` over the seeds both ran (two series indexed by seed): pairs, mean and sd of the
    differences, their 95% Student-t interval and the one-sample t test's p value."""
    pairs = pd.concat([first, second], axis=1, join="inner").dropna()
    diffs = (pairs.iloc[:, 0] - pairs.iloc[:, 1]).to_numpy()
    mean, sd, low, high = t_interval(diffs)
    p_value = float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue) if len(diffs) > 1 and sd > 0 else np.nan
    return {"n_pairs": len(diffs), "mean_diff": mean, "sd_diff": sd, "ci_low": low, "ci_high": high,
            "p_value": p_value, "note": "" if len(diffs) > 1 else "fewer than 2 shared seeds: no interval"}


def separate_values(row: pd.Series) -> dict[str, Any]:
    """The task and body (`SEPARATE`) a selection row was chosen within; empty if the study had one of each."""
    return {key: row[key] for key in SEPARATE if key in row.index and pd.notna(row[key])}


def selected_run_ids(trained: pd.DataFrame, row: pd.Series) -> pd.Series:
    """run_id of the runs behind one selection row: its model kind and config, labelled as the selection
    labelled them, within its task and body (a config's label depends on what varies in the group it was
    chosen from, so labels from the whole study would not match)."""
    group = trained
    for key, value in separate_values(row).items():
        group = group[group[key] == value]
    labels = config_labels(group, design_columns(group))
    return group.loc[(group[MODEL_KIND] == row["model_kind"]) & (labels == row["config"]), "run_id"]


def _for_each_task_and_body(runs: pd.DataFrame, analysis) -> pd.DataFrame:
    # Heads are compared on one task and one body: selecting across bodies would credit the head for the body.
    keys = [c for c in SEPARATE if c in runs.columns and runs[c].nunique() > 1]
    if not keys:
        return analysis(runs)
    parts = [analysis(group).assign(**dict(zip(keys, values)))
             for values, group in runs.groupby(keys)]
    return pd.concat(parts, ignore_index=True)


def training_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of finished training runs that have a test accuracy."""
    if "run_kind" not in runs.columns or RESPONSE not in runs.columns:
        trained = runs.iloc[0:0]
    else:
        trained = runs[(runs["run_kind"] == "train") & runs[RESPONSE].notna()].reset_index(drop=True)
    if MODEL_KIND not in trained.columns:
        trained = trained.assign(**{MODEL_KIND: QUANTUM})
    return trained


def screening_statistics(runs: pd.DataFrame, out_dir: Path | None = None) -> ScreeningResult:
    """All screening tables for the training runs in `runs`; written to `out_dir` as CSV when given."""
    trained = training_runs(runs)
    quantum = trained[trained[MODEL_KIND] == QUANTUM].reset_index(drop=True)
    selection = _for_each_task_and_body(trained, selection_table) if len(trained) else pd.DataFrame()

    def paired(group: pd.DataFrame) -> pd.DataFrame:
        return paired_differences(group.reset_index(drop=True), selection_table(group.reset_index(drop=True)))

    result = ScreeningResult(
        main_effects=_for_each_task_and_body(quantum, main_effects),
        anova=_for_each_task_and_body(quantum, anova),
        selection=selection,
        paired=_for_each_task_and_body(trained, paired) if len(trained) else pd.DataFrame(),
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, table in result.tables().items():
            table.to_csv(out_dir / TABLE_FILES[name], index=False)
        (out_dir / "selection_rule.txt").write_text(SELECTION_RULE + "\n")
    return result
