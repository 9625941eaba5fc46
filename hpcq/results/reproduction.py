"""The seed paper's protocol as a table people compare with the paper: per sentence body, every head's test
accuracy over seeds (mean ± sd, 95% CI), every quantum head minus every classical head on the same body paired
by seed (95% CI), and beside them the numbers others published for the same protocol, labelled as theirs.

Unlike the screening tables (hpcq.results.stats), nothing here is selected: a reproduction study names its
heads up front, so each is reported, the paper-literal head next to the one tuned on validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hpcq.results.stats import (
    MODEL_KIND,
    QUANTUM,
    RESPONSE,
    VALIDATION,
    paired_difference,
    t_interval,
    training_runs,
)
from hpcq.yamlfile import read_yaml_file

PUBLISHED = Path(__file__).with_name("published_sst2.yaml")
PROTOCOL = {"data.dataset": "sst2-sentences", "data.split": "paper"}
SIZE_BY_SEED = ("svc",)  # an SVC's parameters are its support vectors, which differ from seed to seed


def paper_protocol_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished training runs on the paper's SST-2 protocol (256 + 256 drawn, tested on the rest)."""
    trained = training_runs(runs)
    if trained.empty or any(column not in trained.columns for column in PROTOCOL):
        return trained.iloc[0:0]
    mask = np.logical_and.reduce([trained[column] == value for column, value in PROTOCOL.items()])
    return trained[mask].reset_index(drop=True)


def body_label(row: pd.Series) -> str:
    """`frozen all-mpnet-base-v2` or `SetFit-tuned all-mpnet-base-v2`: the body a head read its embeddings from."""
    tuned = row.get("task") == "setfit"
    budget = f" ({row['setfit.num_iterations']:g} iteration(s))" if tuned and "setfit.num_iterations" in row else ""
    return f"{'SetFit-tuned' if tuned else 'frozen'} {row.get('data.model', 'packaged')}{budget}"


def head_label(row: pd.Series) -> str:
    """The head as a reader names it: its kind, its qubits when quantum, and the trainable parameter count of
    the heads whose config fixes it (an SVC's support vectors, counted as its parameters, vary by seed)."""
    kind = row[MODEL_KIND]
    qubits = f" Q={row['model.n_qubits']:g}" if kind == QUANTUM and "model.n_qubits" in row else ""
    params = row.get("final.n_trainable_params")
    fixed = kind not in SIZE_BY_SEED and params is not None and not pd.isna(params)
    return f"{kind}{qubits}" + (f", {params:g} params" if fixed else "")


def _labelled(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.assign(body=runs.apply(body_label, axis=1), head=runs.apply(head_label, axis=1))


def head_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (body, head): seeds, validation mean, test mean ± sd and its 95% Student-t interval."""
    rows = []
    for (body, head), group in _labelled(runs).groupby(["body", "head"], sort=True):
        mean, sd, low, high = t_interval(group[RESPONSE])
        params = group["final.n_trainable_params"] if "final.n_trainable_params" in group else pd.Series([np.nan])
        rows.append({"body": body, "head": head, "quantum": group[MODEL_KIND].iloc[0] == QUANTUM,
                     "params": f"{params.min():g}" if params.nunique() <= 1 else f"{params.min():g}-{params.max():g}",
                     "seeds": ",".join(str(int(s)) for s in sorted(group["seed"])), "n_seeds": len(group),
                     "val_mean": group[VALIDATION].mean(), "test_mean": mean, "test_sd": sd, "test_ci_low": low,
                     "test_ci_high": high})
    return pd.DataFrame(rows)


def paired_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every quantum head minus every classical head on the same body, over the seeds both ran (95% CI), with
    the p value Holm-adjusted over the whole table (`p_holm`): it holds a dozen comparisons, so a raw p < 0.05
    among them is expected by chance alone."""
    labelled = _labelled(runs)
    rows = []
    for body, on_body in labelled.groupby("body", sort=True):
        by_head = {head: group.groupby("seed")[RESPONSE].mean() for head, group in on_body.groupby("head")}
        kinds = on_body.groupby("head")[MODEL_KIND].first()
        for quantum in sorted(h for h in by_head if kinds[h] == QUANTUM):
            for classical in sorted(h for h in by_head if kinds[h] != QUANTUM):
                rows.append({"body": body, "quantum": quantum, "classical": classical,
                             **paired_difference(by_head[quantum], by_head[classical])})
    table = pd.DataFrame(rows)
    if not table.empty:
        table.insert(table.columns.get_loc("p_value") + 1, "p_holm", holm(table["p_value"]))
    return table


def holm(p_values: pd.Series) -> pd.Series:
    """Holm's step-down adjustment over the finite p values (family-wise error); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    adjusted = pd.Series(np.nan, index=p_values.index)
    finite = p_values.notna()
    if finite.any():
        adjusted[finite] = multipletests(p_values[finite].to_numpy(), method="holm")[1]
    return adjusted


def published_table(path: Path = PUBLISHED) -> pd.DataFrame:
    """What others published on this protocol, each row naming whose number it is and where it is from."""
    return pd.DataFrame(read_yaml_file(path, "published SST-2 numbers")["results"])
