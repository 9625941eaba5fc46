"""Screening statistics recover the effects planted in a synthetic study written through write_run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from hpcq.results import plots, write_run
from hpcq.results.aggregate import aggregate
from hpcq.results.analysis import analyse_study
from hpcq.results.stats import (SELECTION_RULE, anova, design_columns, factor_levels, level_label, main_effects,
                                screening_statistics, t_interval, training_runs)
from results_synthetic import CLASSICAL_MEANS, LAYER_EFFECT, QUBIT_EFFECT, write_bench_scale, write_study


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    write_study(root / "runs")
    write_bench_scale(root / "runs")
    return aggregate(root / "runs", root / "agg", progress=False).runs


def test_t_interval_matches_statsmodels():
    from statsmodels.stats.weightstats import DescrStatsW

    values = np.array([0.81, 0.84, 0.83, 0.86, 0.82])
    mean, sd, low, high = t_interval(values)
    assert mean == pytest.approx(values.mean()) and sd == pytest.approx(values.std(ddof=1))
    assert (low, high) == pytest.approx(DescrStatsW(values).tconfint_mean(alpha=0.05))
    assert np.isnan(t_interval([0.5])[2])
    assert t_interval([0.5, 0.5, 0.5])[2:] == (0.5, 0.5)  # no spread: the interval is the point


def test_level_labels():
    assert [level_label(v) for v in (None, float("nan"), 3, 3.0, 0.01, "depolarizing")] == \
        ["none", "none", "3", "3", "0.01", "depolarizing"]


def test_design_columns_drop_seeds_paths_and_identifiers(runs):
    design = design_columns(training_runs(runs))
    assert "model.n_qubits" in design and "model.kind" in design
    assert "seed" not in design and "output" not in design


def test_main_effects_recover_planted_effects(runs):
    quantum = training_runs(runs).query("`model.kind` == 'quantum'")
    effects = main_effects(quantum).set_index(["factor", "level"])
    assert set(effects.index.get_level_values("factor")) == {"qubits", "layers"}  # only these vary
    qubit_gap = effects.loc[("qubits", "8"), "mean"] - effects.loc[("qubits", "4"), "mean"]
    assert qubit_gap == pytest.approx(QUBIT_EFFECT, abs=0.004)
    for factor in ("qubits", "layers"):
        table = effects.loc[factor]
        assert (table["ci_low"] < table["mean"]).all() and (table["mean"] < table["ci_high"]).all()
    layer_gap = effects.loc[("layers", "2"), "mean"] - effects.loc[("layers", "1"), "mean"]
    assert layer_gap == pytest.approx(LAYER_EFFECT, abs=0.004)


def test_anova_finds_the_qubit_effect(runs):
    quantum = training_runs(runs).query("`model.kind` == 'quantum'")
    table = anova(quantum).set_index("term")
    assert table.loc["qubits", "p_value"] < 0.01
    assert table.loc["qubits", "partial_eta_sq"] > table.loc["layers", "partial_eta_sq"]
    assert np.isnan(table.loc["Residual", "partial_eta_sq"])


def _residual_ss(design: np.ndarray, y: np.ndarray) -> float:
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(((y - design @ coefficients) ** 2).sum())


def test_partial_eta_squared_matches_an_independent_type_ii_computation():
    """Unbalanced two-factor design: type-II SS of a factor is the rise in residual SS when it alone is dropped
    from the main-effects model (least squares by numpy); partial eta² = SS / (SS + SS_residual)."""
    rng = np.random.default_rng(3)
    qubits = np.array([4] * 7 + [8] * 4 + [12] * 5)
    layers = np.array([1, 2, 1, 1, 2, 1, 1, 2, 2, 1, 2, 1, 2, 2, 1, 2])
    y = 0.8 + 0.01 * (qubits == 8) + 0.02 * (qubits == 12) + 0.005 * (layers == 2) + rng.normal(0, 0.004, len(qubits))
    runs = pd.DataFrame({"model.n_qubits": qubits, "model.layers": layers, "final.test_accuracy": y})
    table = anova(runs).set_index("term")
    ones = np.ones((len(y), 1))
    q = np.stack([qubits == 8, qubits == 12], axis=1).astype(float)
    l = (layers == 2).astype(float)[:, None]
    full = _residual_ss(np.hstack([ones, q, l]), y)
    for term, without in (("qubits", np.hstack([ones, l])), ("layers", np.hstack([ones, q]))):
        ss = _residual_ss(without, y) - full
        assert table.loc[term, "sum_sq"] == pytest.approx(ss, rel=1e-9)
        assert table.loc[term, "partial_eta_sq"] == pytest.approx(ss / (ss + full), rel=1e-9)


def test_factors_that_vary_together_are_one_factor():
    """Two whole configs compared (the paper-protocol study's 10- and 14-qubit heads): qubits and layers
    always change together, so no test can tell them apart. Reported apart, each claimed the difference."""
    rng = np.random.default_rng(5)
    qubits = np.repeat([10, 14], 5)
    runs = pd.DataFrame({"model.n_qubits": qubits, "model.layers": np.where(qubits == 10, 2, 3),
                         "final.test_accuracy": np.where(qubits == 10, 0.86, 0.82) + rng.normal(0, 0.003, 10)})
    effects = main_effects(runs)
    assert set(effects["factor"]) == {"qubits = layers"}
    assert set(effects["column"]) == {"model.n_qubits, model.layers"}
    table = anova(runs).set_index("term")
    assert list(table.index) == ["qubits = layers", "Residual"] and table.loc["qubits = layers", "df"] == 1


def test_a_confounded_design_gets_a_note_not_numbers():
    """layers = qubits + lr as dummies (cells 00-0, 10-1, 01-1), no two of them aliased: the design is
    rank-deficient, and statsmodels would still print F and p for every term."""
    cells = [(4, 0.01, 1), (8, 0.01, 2), (4, 0.1, 2)] * 3
    qubits, lr, layers = (np.array(column) for column in zip(*cells))
    runs = pd.DataFrame({"model.n_qubits": qubits, "train.lr": lr, "model.layers": layers,
                         "final.test_accuracy": 0.8 + 0.01 * np.arange(len(cells)) % 3})
    table = anova(runs)
    note = table["note"].iloc[0]
    assert len(table) == 1 and "confounded" in note and "rank 3 of 4" in note
    assert table["p_value"].isna().all()


def test_main_effects_of_two_tasks_are_two_series_on_one_level_axis(tmp_path, monkeypatch):
    """A study analysed per task: each task's means are their own series and grand mean, placed by level (one
    task lacks level 8), not one line running through both tasks' means."""
    effects = pd.DataFrame({"factor": "qubits", "column": "model.n_qubits", "n": 5, "effect": 0.0,
                            "task": ["head", "head", "setfit"], "level": ["4", "8", "4"],
                            "mean": [0.80, 0.82, 0.90], "sd": 0.01, "ci_low": [0.79, 0.81, 0.89],
                            "ci_high": [0.81, 0.83, 0.91]})
    drawn = []
    monkeypatch.setattr(plots, "save", lambda figure, out_dir, name: drawn.append(figure) or [])
    plots.main_effects_plot(effects, tmp_path)
    (axis,) = drawn[0].axes
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["head", "setfit"]
    series = [line for line in axis.lines if line.get_linestyle() == "-"]
    assert [list(line.get_xdata()) for line in series] == [[0, 1], [0]]
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["4", "8"]
    grand_means = sorted(line.get_ydata()[0] for line in axis.lines if line.get_linestyle() == "--")
    assert grand_means == pytest.approx([0.81, 0.90])


def test_anova_says_when_it_cannot_be_fitted():
    tiny = pd.DataFrame({"model.n_qubits": [4, 8], "final.test_accuracy": [0.8, 0.9]})
    assert "cannot fit" in anova(tiny)["note"].iloc[0]


def test_selection_rule_and_paired_difference(runs, tmp_path):
    result = screening_statistics(runs, tmp_path)
    chosen = result.selection[result.selection["selected"]].set_index("model_kind")
    assert chosen.loc["quantum", "config"] == "layers=2, n_qubits=8"
    assert set(chosen.index) == {"quantum", *CLASSICAL_MEANS}
    paired = result.paired.set_index("classical_kind")
    best_quantum = 0.85 + QUBIT_EFFECT + LAYER_EFFECT
    for kind, mean in CLASSICAL_MEANS.items():
        truth = best_quantum - mean
        assert paired.loc[kind, "n_pairs"] == 4
        assert paired.loc[kind, "ci_low"] - 0.003 < truth < paired.loc[kind, "ci_high"] + 0.003
    assert (tmp_path / "selection_rule.txt").read_text().strip() == SELECTION_RULE
    for name in ("main_effects.csv", "anova.csv", "selection.csv", "paired_differences.csv"):
        assert len(pd.read_csv(tmp_path / name)) > 0


def test_nested_noise_config_is_one_factor(tmp_path):
    for i, noise in enumerate([None, {"kind": "depolarizing", "p": 0.01}, {"kind": "depolarizing", "p": 0.05}]):
        write_run(tmp_path / "runs" / f"{i}.h5", kind="train",
                  config={"seed": 0, "model": {"kind": "quantum", "noise": noise}}, final={"test_accuracy": 0.8})
    table = aggregate(tmp_path / "runs", tmp_path / "agg", progress=False).runs
    assert sorted(factor_levels(table, "model.noise")) == ["kind=depolarizing, p=0.01",
                                                            "kind=depolarizing, p=0.05", "none"]


def test_tables_without_training_runs_do_not_fail(tmp_path):
    root = tmp_path / "runs"
    write_bench_scale(root)
    result = screening_statistics(aggregate(root, tmp_path / "agg", progress=False).runs)
    assert result.main_effects.empty and result.selection.empty


def test_study_plots_are_valid_png_and_svg(tmp_path):
    write_study(tmp_path / "runs")
    write_bench_scale(tmp_path / "runs")
    analysis = analyse_study(tmp_path / "runs", tmp_path / "out", progress=False)
    assert set(analysis.figures) == {"main_effects", "accuracy_vs_qubits", "learning_curves", "scaling"}
    for paths in analysis.figures.values():
        png, svg = paths
        image = imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01  # not blank
        assert "<svg" in svg.read_text()[:2000]
    assert plots.main_effects_plot(pd.DataFrame(), tmp_path) == []
