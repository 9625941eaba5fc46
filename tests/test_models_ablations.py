"""Each ablation switch changes the quantum head exactly as its description says."""

import pytest
import torch

from hpcq.models import ABLATIONS, build_head, quantum_head_kwargs
from hpcq.models.classical import mlp_parameter_count
from hpcq.train.config import load_config

IN = 384


def head_for(ablation: str, **model):
    config = load_config(None, ["task=head", f"model.ablation={ablation}", "model.n_qubits=4", "model.layers=2",
                                "model.connectivity=2", "model.reuploads=3"]
                         + [f"model.{k}={v}" for k, v in model.items()])
    torch.manual_seed(0)
    return build_head(config["model"], IN, 2, torch.float64)


def cnot_distances(circuit):
    n = circuit.n_qubits
    return {(g.qubits[1] - g.qubits[0]) % n for g in circuit.gates if g.name == "cnot"}


def test_every_ablation_builds_and_runs():
    x = torch.randn(3, IN, dtype=torch.float64)
    for name in ABLATIONS:
        assert head_for(name)(x).shape == (3, 2)


def test_none_is_the_full_head():
    full, none = head_for("none"), head_for("none")
    assert full.parameter_counts() == none.parameter_counts()
    assert len(full.encoder_circuits) == 1 and full.qpu_weights is not None


def test_no_encoders_feeds_a_fixed_projection():
    head = head_for("no_encoders")
    assert head.encoder_circuits == [] and head.parameter_counts()["encoders"] == 0
    assert head.projection.shape == (IN, 4) and not head.projection.requires_grad
    gram = head.projection.T @ head.projection / IN
    assert torch.allclose(gram, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_single_reupload_has_one_angle_encoding_block():
    features = lambda head: sum(g.source == "feature" for g in head.qpu_circuit.gates)  # noqa: E731
    assert features(head_for("none")) == 3 * 4
    assert features(head_for("single_reupload")) == 4


def test_no_pqc2_drops_the_second_pqc():
    full, ablated = head_for("none"), head_for("no_pqc2")
    assert ablated.qpu_circuit.n_weights == full.qpu_circuit.n_weights - 4 * 2 * 2
    assert len(full.qpu_circuit.gates) - len(ablated.qpu_circuit.gates) == 2 * 4 * 2 * 2  # CNOT + R_Y per block


def test_nearest_neighbour_keeps_only_distance_one_rings():
    assert cnot_distances(head_for("none").qpu_circuit) == {1, 2}
    ablated = head_for("nearest_neighbour")
    assert cnot_distances(ablated.qpu_circuit) == {1}
    assert all(cnot_distances(c) == {1} for c in ablated.encoder_circuits)


def test_frozen_quantum_trains_only_the_classical_layers():
    head = head_for("frozen_quantum")
    quantum_before = [p.detach().clone() for p in head.quantum_parameters()]
    classifier_before = head.classifier.weight.detach().clone()
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(head(torch.randn(4, IN, dtype=torch.float64)),
                                      torch.tensor([0, 1, 0, 1])).backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(quantum_before, head.quantum_parameters()))
    assert not torch.equal(classifier_before, head.classifier.weight)
    counts = head.parameter_counts()
    assert counts["encoders"] == counts["qpu"] == 0 and counts["total"] == counts["classifier"]


def test_classical_block_replaces_the_qpu_module_at_its_parameter_count():
    full, ablated = head_for("none"), head_for("classical_block")
    assert ablated.qpu_weights is None
    qpu_weights = full.qpu_circuit.n_weights
    block = ablated.parameter_counts()["qpu"]
    granularity = 4 + 1 + 1  # one more hidden unit of the 4 → h → 1 block
    assert abs(block - qpu_weights) <= granularity / 2
    assert ablated.parameter_counts()["encoders"] == full.parameter_counts()["encoders"]
    assert block == mlp_parameter_count(4, [ablated.classical_block.net[0][0].out_features], 1)


def test_unknown_ablation_is_a_config_error():
    with pytest.raises(Exception, match="model.ablation"):
        quantum_head_kwargs({"ablation": "no_quantum_at_all"})
