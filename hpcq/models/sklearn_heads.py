"""Classical baselines fitted by scikit-learn, with hyperparameters selected on the validation set.

Grids (config `model.logreg.C`, `model.svc.C`, `model.svc.gamma`; defaults in the head schema):
logistic regression (L2, lbfgs) over C; SVC with an RBF kernel over C × gamma. Every grid point is fitted
on the training set; the one with the highest validation accuracy wins, ties going to the earlier grid point
(the grids run from strong to weak regularisation, so ties favour the simpler model). Test data never take
part in selection.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpcq.errors import ConfigError

SKLEARN_KINDS = ("logreg", "svc")


@dataclass
class SklearnFit:
    """The selected model, its hyperparameters, and every grid point's validation accuracy."""

    model: Any
    params: dict[str, Any]
    val_accuracy: float
    grid: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_trainable_params(self) -> int:
        """Logistic regression: coefficients + intercepts. SVC: dual coefficients (one per support vector and
        class pair) + intercepts, the paper's way of counting a kernel machine's size."""
        if hasattr(self.model, "dual_coef_"):
            return int(self.model.dual_coef_.size + self.model.intercept_.size)
        return int(self.model.coef_.size + self.model.intercept_.size)


def _estimators(kind: str, grids: dict[str, Any], seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    if kind == "logreg":
        for c in grids["logreg"]["C"]:
            yield {"C": c}, LogisticRegression(C=c, max_iter=10_000, random_state=seed)
    elif kind == "svc":
        for c, gamma in itertools.product(grids["svc"]["C"], grids["svc"]["gamma"]):
            yield {"C": c, "gamma": gamma}, SVC(C=c, gamma=gamma, kernel="rbf", random_state=seed)
    else:
        raise ConfigError(f"model.kind={kind!r} is not a scikit-learn head; choose one of {', '.join(SKLEARN_KINDS)}")


def fit_sklearn_head(kind: str, grids: dict[str, Any], train: tuple[np.ndarray, np.ndarray],
                     validation: tuple[np.ndarray, np.ndarray], seed: int = 0) -> SklearnFit:
    """Fit every grid point of `kind` on `train` (X, y) and keep the best on `validation`."""
    best: SklearnFit | None = None
    records = []
    for params, estimator in _estimators(kind, grids, seed):
        estimator.fit(*train)
        accuracy = float(estimator.score(*validation))
        records.append({**params, "val_accuracy": accuracy})
        if best is None or accuracy > best.val_accuracy:
            best = SklearnFit(estimator, params, accuracy)
    best.grid = records
    return best
