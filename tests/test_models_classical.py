"""Classical heads: MLP sizes, the parameter-matched MLP (within 5% of its quantum head), the PCA input, and
scikit-learn model selection on validation."""

import numpy as np
import pytest
import torch

from hpcq.models import (
    MLPHead, build_head, fit_sklearn_head, matched_mlp_shape, matched_parameter_budget, mlp_parameter_count,
    trainable_parameter_count,
)
from hpcq.train.config import load_config


def model_config(*overrides):
    return load_config(None, ["task=head", *overrides])["model"]


@pytest.mark.parametrize("hidden", [[], [48], [96, 12]])
def test_mlp_has_the_given_hidden_sizes(hidden):
    head = MLPHead(384, hidden, 2)
    assert trainable_parameter_count(head) == mlp_parameter_count(384, hidden, 2)
    assert head(torch.randn(3, 384)).shape == (3, 2)
    assert mlp_parameter_count(768, [192], 2) == 148_034  # the paper's largest MLP baseline


@pytest.mark.parametrize("overrides", [
    [],
    ["model.n_qubits=14", "model.encoders=2", "model.layers=3", "model.connectivity=3"],
    ["model.n_qubits=4", "model.layers=1", "model.connectivity=1", "model.reuploads=1"],
    ["model.n_qubits=12", "model.encoder_layers=8", "model.encoder_connectivity=4", "model.ablation=no_pqc2"],
])
def test_matched_mlp_is_within_five_percent_of_its_quantum_head(overrides):
    model = model_config("model.kind=mlp_matched", *overrides)
    target = matched_parameter_budget(model, 384, 2)
    head = build_head(model, 384, 2)
    assert isinstance(head, MLPHead)
    assert abs(trainable_parameter_count(head) - target) <= 0.05 * target


def test_matched_shape_uses_the_full_input_when_the_budget_allows():
    shape = matched_mlp_shape(20_000, 384, 2, preferred_components=10)
    assert shape.components is None and shape.parameters == mlp_parameter_count(384, [shape.hidden], 2)
    small = matched_mlp_shape(144, 384, 2, preferred_components=10)
    assert small.components is not None and abs(small.parameters - 144) <= 0.05 * 144


def test_principal_components_are_fitted_on_the_training_features():
    torch.manual_seed(0)
    x = torch.randn(200, 20, dtype=torch.float64) * torch.linspace(5, 0.1, 20, dtype=torch.float64) + 3
    head = MLPHead(20, [4], 2, components=3, dtype=torch.float64)
    head.prepare(x)
    assert torch.allclose(head.center, x.mean(0))
    projected = (x - head.center) @ head.basis
    assert torch.allclose(projected.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert projected.var(0)[0] > projected.var(0)[1] > projected.var(0)[2]  # leading directions, in order
    again = MLPHead(20, [4], 2, components=3, dtype=torch.float64)
    again.prepare(x)
    assert torch.equal(again.basis, head.basis)  # deterministic signs


def test_sklearn_selection_uses_validation_only():
    rng = np.random.default_rng(0)
    w = rng.normal(size=8)
    x = rng.normal(size=(300, 8))
    y = (x @ w + rng.normal(scale=2.0, size=300) > 0).astype(int)
    grids = model_config()
    fit = fit_sklearn_head("logreg", grids, (x[:200], y[:200]), (x[200:], y[200:]))
    accuracies = [record["val_accuracy"] for record in fit.grid]
    assert len(fit.grid) == len(grids["logreg"]["C"])
    assert fit.val_accuracy == max(accuracies)
    assert fit.params["C"] == fit.grid[accuracies.index(max(accuracies))]["C"]  # ties: the earlier grid point
    assert fit.n_trainable_params == 8 + 1
    svc = fit_sklearn_head("svc", grids, (x[:200], y[:200]), (x[200:], y[200:]))
    assert len(svc.grid) == len(grids["svc"]["C"]) * len(grids["svc"]["gamma"])
    assert svc.n_trainable_params == svc.model.dual_coef_.size + 1
