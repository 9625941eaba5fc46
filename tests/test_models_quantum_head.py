"""QuantumHead: shapes, dtypes, parameter counts, the circuit it builds, and gradients against finite
differences (float64, tiny head)."""

import math

import pytest
import torch

from hpcq.circuits import reuploading_ansatz
from hpcq.errors import ConfigError
from hpcq.models import MLPHead, QuantumHead, reuploading_circuit

TINY = dict(in_features=6, n_qubits=3, layers=1, connectivity=1, reuploads=2, encoders=1, encoder_qubits=3,
            measured=1, backend="statevector")


def tiny_head(**changes) -> QuantumHead:
    torch.manual_seed(0)
    return QuantumHead(**{**TINY, "dtype": torch.float64, **changes})


def test_forward_shapes_and_dtypes():
    torch.manual_seed(0)
    head = QuantumHead(384, 4, layers=1, connectivity=1, reuploads=1, encoders=2, encoder_qubits=None, measured=2,
                       backend="statevector", n_classes=3)
    logits = head(torch.randn(5, 384))
    assert logits.shape == (5, 3) and logits.dtype == torch.float32
    assert [c.n_qubits for c in head.encoder_circuits] == [9, 9]  # smallest register holding 384 amplitudes
    assert tiny_head()(torch.randn(2, 6, dtype=torch.float64)).dtype == torch.float64


def test_parameter_count_follows_the_architecture():
    q, qc, c, layer, e, qm, k = 5, 9, 2, 2, 2, 1, 2
    torch.manual_seed(0)
    head = QuantumHead(384, q, layer, c, reuploads=3, encoders=e, encoder_qubits=qc, measured=qm,
                       backend="statevector", n_classes=k)
    counts = head.parameter_counts()
    assert counts["encoders"] == e * qc * c * layer
    assert counts["qpu"] == 2 * q * c * layer  # PQC1 shared by all 3 blocks, then PQC2
    assert counts["classifier"] == (e * qc + qm + 1) * k  # readout="concat": encoder outputs and measured qubits
    assert counts["total"] == sum(p.numel() for p in head.parameters())


def test_default_qpu_circuit_is_the_shared_ansatz_and_separate_pqc1_adds_weights():
    default = reuploading_circuit(4, 2, 2, 3)
    reference = reuploading_ansatz(4, 2, 2, 3)
    assert default.gates == reference.gates and default.n_weights == reference.n_weights
    separate = reuploading_circuit(4, 2, 2, 3, shared_pqc1=False)
    assert separate.n_weights == 4 * 2 * 2 * (3 + 1)
    assert len(separate.gates) == len(default.gates)


def test_angle_encoding_reads_the_encoder_outputs_scaled():
    head = tiny_head()
    x = torch.randn(4, 6, dtype=torch.float64)
    z = head.encode(x)
    assert z.shape == (4, 3) and z.abs().max() <= 1 + 1e-12
    assert torch.equal(head.qpu_inputs(z), z)  # merge="concat", E·Q_c = Q: output i feeds qubit i
    wide = tiny_head(n_qubits=5, connectivity=1)
    assert torch.equal(wide.qpu_inputs(z), z[:, [0, 1, 2, 0, 1]])


def _flat_grad_check(head: QuantumHead, x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> float:
    loss_fn = lambda: torch.nn.functional.cross_entropy(head(x), y)  # noqa: E731
    head.zero_grad()
    loss_fn().backward()
    worst = 0.0
    with torch.no_grad():
        for p in head.parameters():
            for i in range(p.numel()):
                flat = p.view(-1)
                old = flat[i].item()
                flat[i] = old + eps
                up = loss_fn().item()
                flat[i] = old - eps
                down = loss_fn().item()
                flat[i] = old
                worst = max(worst, abs((up - down) / (2 * eps) - p.grad.view(-1)[i].item()))
    return worst


@pytest.mark.parametrize("changes", [{}, {"shared_pqc1": False, "merge": "linear", "readout": "measured"},
                                     {"encoders": 2, "encoder_input": "split", "encoder_qubits": 2,
                                      "n_qubits": 4, "bias_amplitude": 0.5}])
def test_gradients_match_finite_differences(changes):
    head = tiny_head(**changes)
    torch.manual_seed(1)
    x, y = torch.randn(5, 6, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    assert _flat_grad_check(head, x, y) < 1e-7


def test_shots_give_an_unbiased_estimate_with_the_exact_gradient():
    exact, sampled = tiny_head(), tiny_head(shots=200)
    x = torch.randn(3, 6, dtype=torch.float64)
    inputs = exact.qpu_inputs(exact.encode(x)).detach()
    values = exact.qpu(inputs)
    torch.manual_seed(5)
    draws = torch.stack([sampled.qpu(inputs) for _ in range(400)])
    assert not torch.equal(draws[0], draws[1])
    error = (draws.mean(0) - values).abs()
    standard_error = ((1 - values**2) / 200 / 400).sqrt()
    assert torch.all(error < 4 * standard_error + 1e-12)
    for head in (exact, sampled):
        head.zero_grad()
        head.qpu(inputs).sum().backward()
    assert torch.allclose(exact.qpu_weights.grad, sampled.qpu_weights.grad)


@pytest.mark.parametrize("changes, key", [
    ({"encoder_qubits": 2}, "encoder_qubits"),
    ({"measured": 4}, "measured"),
    ({"backend": "warp-drive"}, "backend"),
    ({"connectivity": 3}, "connectivity"),
    ({"merge": "mean", "n_qubits": 4}, "merge"),
    ({"shots": 0}, "shots"),
    ({"noise": {"depolarizing_1q": 2.0}}, "depolarizing_1q"),
    ({"input_dropout": 1.0}, "input_dropout"),
])
def test_bad_arguments_name_the_argument(changes, key):
    with pytest.raises(ConfigError, match=key):
        tiny_head(**changes)


def test_angle_scale_is_pi_by_default():
    assert tiny_head().angle_scale == pytest.approx(math.pi)


def test_bias_amplitude_makes_encoder_outputs_odd_in_the_embedding_and_center_uses_the_training_mean():
    torch.manual_seed(2)
    x = torch.randn(4, 6, dtype=torch.float64)
    plain = tiny_head()
    assert torch.allclose(plain.encode(x), plain.encode(-x))  # amplitude encoding alone: even in x
    biased = tiny_head(bias_amplitude=1.0)
    unit = x / x.norm(dim=1, keepdim=True)
    assert torch.allclose(biased.amplitudes(x, slice(0, 6)), torch.cat([unit, torch.ones(4, 1)], dim=1))
    assert ((biased.encode(x) - biased.encode(-x)) / 2).abs().max() > 0.05  # the linear terms
    centred = tiny_head(center=True)
    train = torch.randn(10, 6, dtype=torch.float64) + 3
    centred.prepare(train)
    assert torch.allclose(centred.encode(x), plain.encode(x - train.mean(dim=0)))  # same seed, same angles


@pytest.mark.parametrize("kind", ["quantum", "mlp"])
def test_input_dropout_acts_while_training_only_and_leaves_the_weights_alone(kind):
    def head(p: float) -> torch.nn.Module:
        if kind == "quantum":
            return tiny_head(input_dropout=p, center=True, bias_amplitude=1.0)
        torch.manual_seed(0)
        return MLPHead(6, [5], components=4, input_dropout=p, dtype=torch.float64)
    x = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    plain, dropped = head(0.0), head(0.5)
    for model in (plain, dropped):
        model.prepare(x)
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), dropped.state_dict().values()))
    plain.eval(), dropped.eval()
    assert torch.equal(plain(x), dropped(x))
    plain.train(), dropped.train()
    assert torch.equal(plain(x), plain(x))  # p = 0: training mode changes nothing
    assert not torch.allclose(dropped(x), plain(x))
