"""Every run config the repository ships loads through hpcq's schema, and the heads they describe have the
sizes their comments claim (the paper's 886-parameter head is counted, not assumed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcq.models.classical import trainable_parameter_count
from hpcq.models.factory import build_head
from hpcq.train.config import load_config

RUNS = sorted((Path(__file__).parents[1] / "config" / "runs").glob("*.yaml"))
MPNET_WIDTH = 768


@pytest.mark.parametrize("path", RUNS, ids=lambda path: path.stem)
def test_shipped_run_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config["task"] in {"head", "setfit", "joint", "glue", "causal_lm"}


def test_the_paper_head_has_886_parameters_on_mpnet() -> None:
    model = load_config(RUNS[0].with_name("paper_head_14q.yaml"))["model"]
    head = build_head(model, MPNET_WIDTH, 2)
    assert model["n_qubits"] == 14 and trainable_parameter_count(head) == 886
    matched = build_head({**model, "kind": "mlp_matched"}, MPNET_WIDTH, 2)
    assert abs(trainable_parameter_count(matched) - 886) <= 0.05 * 886


def test_the_end_to_end_phase_uses_the_shipped_quantum_head() -> None:
    head = load_config(RUNS[0].with_name("quantum_head.yaml"))["model"]
    joint = load_config(RUNS[0].with_name("setfit_end_to_end.yaml"))
    assert joint["method"] == "full"
    for key, value in joint["model"].items():
        if key in head and key != "backend":
            assert head[key] == value, key
