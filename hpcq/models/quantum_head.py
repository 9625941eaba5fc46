"""The seed paper's hybrid quantum head (Kim et al., arXiv 2504.08732, Fig. 1), trained end to end.

    embedding ─┬─ sQE_1: amplitude encoding → sPQC(θ_c1) → <Z> on its Q_c qubits ─┐
               ├─ …                                                              ├─ z ─ merge → angles
               └─ sQE_E: …                                                       ─┘
    angles → N × [R_Y(angle_i) on qubit i → PQC1(θ_q)] → PQC2(θ_q) → <Z> on Q_m qubits → m
    linear([z, m]) → class logits

Choices where the paper is silent or ambiguous (reference/seed-qllm.md §7), each a keyword switch:

* Padding (768 or 384 → 2^Q_c): the embedding is L2-normalised and zero-padded; `encoder_qubits` defaults to
  the smallest register that holds it, but at least `n_qubits` (Q_c = Q = 10 for the paper's 10-qubit head).
* What an encoder loads: the paper's plain amplitude encoding (the default) gives <Z> values that are even
  functions of the embedding (x and −x load the same state up to sign), so none is linear in it.
  `bias_amplitude=b` loads the unit embedding followed by the constant b, which adds terms linear in x
  (weight 2b/(1 + b²), largest at b = 1); `center=True` first subtracts the training mean (fitted in
  `prepare`), which sentence embeddings share and which carries no label. config/runs/quantum_head.yaml
  turns both on, with a deeper encoder (`encoder_layers`), and says why. `input_dropout=p` zeroes each centred
  feature with probability p while training (a regulariser; nothing is dropped in evaluation).
* Several encoders (E > 1): `encoder_input="full"` (default) gives every encoder the whole embedding (an
  ensemble of differently initialised sPQCs); `"split"` gives encoder e the e-th contiguous slice, so each
  needs fewer qubits (the paper's O(E·2^Q) memory argument).
* Merge (E·Q_c encoder outputs → Q angles): `merge="concat"` (default) concatenates the encoder outputs and
  feeds output i mod (E·Q_c) to qubit i (for E = 1 and Q_c = Q this is simply output i → qubit i; with
  Q_c > Q the extra outputs reach the classifier through the readout only); `"mean"` averages the E encoders
  qubit by qubit (needs Q_c = Q); `"linear"` is a trainable tanh(linear) map.
* Angle encoding: angle_i = `angle_scale`·input_i; inputs are <Z> values in [−1, 1], so the default π lets
  the data span a full half-turn in each direction.
* PQC1 parameters: shared by every re-uploading block (`shared_pqc1=True`, the paper's Fig. 1 labels every
  block "PQC 1 (θ_q)") or one set per block.
* Linear-layer input: the paper fixes Q_m = 1 yet counts (Q_c + 1)·k output parameters. `readout="concat"`
  (default) follows the count: the classifier reads the encoder outputs z and the Q_m measured values;
  `readout="measured"` reads only the measured qubits.
* Shots and noise act on the QPU module only: the encoders are simulated exactly in the paper, too.

Ablation switches (see hpcq.models.ablations): `encoders=0` (no encoders: the QPU module reads a fixed random
orthonormal projection of the normalised embedding, scaled to order-1 values), `reuploads=1`, `pqc2=False`,
`connectivity=1`, `freeze_quantum=True` (quantum weights stay at their random initial values; only the
classical layers train), `qpu_block="classical"` (a tanh MLP with the QPU module's parameter count instead).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from hpcq.circuits import Circuit, encoder_circuit
from hpcq.errors import ConfigError
from hpcq.models.circuits import reuploading_circuit
from hpcq.models.classical import (
    TanhBlock,
    input_dropout_layer,
    matched_hidden_width,
    trainable_parameter_count,
)
from hpcq.sim import BACKENDS, expectation
from hpcq.sim.noise import NoiseSpec
from hpcq.sim.shots import check_shots, estimate_expectation

ENCODER_INPUTS = ("full", "split")
MERGES = ("concat", "mean", "linear")
READOUTS = ("concat", "measured")
QPU_BLOCKS = ("quantum", "classical")


def z_labels(n_qubits: int, qubits: Sequence[int]) -> list[str]:
    """Qiskit-order labels of Z on each of `qubits`."""
    return ["I" * (n_qubits - 1 - q) + "Z" + "I" * q for q in qubits]


def _slices(n_features: int, parts: int, mode: str) -> list[slice]:
    """The embedding slice each encoder reads: all of it, or E contiguous, nearly equal parts."""
    if mode == "full":
        return [slice(0, n_features)] * parts
    bounds = np.linspace(0, n_features, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


class QuantumHead(nn.Module):
    """E simulated encoders, a data re-uploading QPU module and one linear layer; see the module docstring.

    `forward(x)` maps embeddings [batch, in_features] to class logits [batch, n_classes]. Quantum weights are
    angles drawn uniformly from [−init_scale, init_scale] with the global torch RNG (seed it first).
    """

    def __init__(
        self,
        in_features: int,
        n_qubits: int,
        layers: int,
        connectivity: int,
        reuploads: int,
        encoders: int = 1,
        encoder_qubits: int | None = None,
        measured: int = 1,
        backend: str = "auto",
        shots: int | None = None,
        noise: NoiseSpec | dict | None = None,
        *,
        n_classes: int = 2,
        encoder_layers: int | None = None,
        encoder_connectivity: int | None = None,
        encoder_input: str = "full",
        merge: str = "concat",
        readout: str = "concat",
        shared_pqc1: bool = True,
        pqc2: bool = True,
        qpu_block: str = "quantum",
        freeze_quantum: bool = False,
        angle_scale: float = math.pi,
        init_scale: float = math.pi,
        center: bool = False,
        bias_amplitude: float = 0.0,
        input_dropout: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise ConfigError(f"in_features={in_features!r} must be a positive integer (the embedding width)")
        if not isinstance(n_qubits, int) or n_qubits < 2:
            raise ConfigError(f"n_qubits={n_qubits!r} must be an integer >= 2 (the QPU module's CNOT rings)")
        if not isinstance(encoders, int) or encoders < 0:
            raise ConfigError(f"encoders={encoders!r} must be an integer >= 0 (0: no encoders)")
        if not isinstance(measured, int) or not 1 <= measured <= n_qubits:
            raise ConfigError(f"measured={measured!r} must be between 1 and n_qubits={n_qubits}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r} is not available; choose one of {', '.join(sorted(BACKENDS))}")
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype={dtype} must be torch.float32 or torch.float64")
        self.in_features, self.n_qubits, self.n_classes = in_features, n_qubits, n_classes
        self.shots = check_shots(shots)
        self.noise = NoiseSpec.from_config(noise)
        # noise runs by trajectories on the statevector backend only, so that is what auto means for a noisy head
        noisy = self.noise is not None and not self.noise.is_ideal
        self.backend = "statevector" if backend == "auto" and noisy else backend
        self.encoder_input = _choice("encoder_input", encoder_input, ENCODER_INPUTS)
        self.merge = _choice("merge", merge, MERGES)
        self.readout = _choice("readout", readout, READOUTS)
        self.qpu_block = _choice("qpu_block", qpu_block, QPU_BLOCKS)
        self.angle_scale = float(angle_scale)
        self.bias_amplitude = float(bias_amplitude)
        self.dtype = dtype
        self.center = bool(center)
        self.register_buffer("center_vector", torch.zeros(in_features, dtype=dtype))
        self.input_dropout = input_dropout_layer(input_dropout)

        self.slices = _slices(in_features, encoders, self.encoder_input) if encoders else []
        encoder_depth = encoder_layers if encoder_layers is not None else layers
        encoder_reach = encoder_connectivity if encoder_connectivity is not None else connectivity
        self.encoder_circuits = [
            self._encoder(s.stop - s.start + (self.bias_amplitude != 0), encoder_qubits, encoder_depth, encoder_reach)
            for s in self.slices
        ]
        self.encoder_weights = nn.ParameterList(
            [self._angles(c.n_weights, init_scale) for c in self.encoder_circuits]
        )
        self.z_width = sum(c.n_qubits for c in self.encoder_circuits) if encoders else n_qubits
        if not encoders:
            if n_qubits > in_features:
                raise ConfigError(f"encoders=0 projects the {in_features}-dim embedding onto n_qubits={n_qubits} "
                                  "directions, which needs n_qubits <= in_features")
            # Orthonormal columns keep the projection well conditioned; sqrt(d) scales a unit vector's
            # components to order 1, the range of the <Z> values the encoders would have given.
            q, _ = torch.linalg.qr(torch.randn(in_features, n_qubits, dtype=torch.float64))
            self.register_buffer("projection", (q * math.sqrt(in_features)).to(dtype))
        self.merge_layer = nn.Linear(self.z_width, n_qubits).to(dtype) if self.merge == "linear" else None
        if self.merge == "mean" and any(c.n_qubits != n_qubits for c in self.encoder_circuits):
            raise ConfigError(f"merge='mean' averages encoder outputs qubit by qubit and needs encoder_qubits = "
                              f"n_qubits = {n_qubits}; use merge='concat' or 'linear'")

        self.qpu_circuit: Circuit = reuploading_circuit(n_qubits, layers, connectivity, reuploads,
                                                        shared_pqc1=shared_pqc1, pqc2=pqc2)
        self.observables = z_labels(n_qubits, range(measured))
        if self.qpu_block == "quantum":
            self.qpu_weights = self._angles(self.qpu_circuit.n_weights, init_scale)
            self.classical_block = None
        else:
            hidden = matched_hidden_width(max(self.qpu_circuit.n_weights, 1), n_qubits, measured)
            self.qpu_weights = None
            self.classical_block = TanhBlock(n_qubits, hidden, measured, dtype)
        if freeze_quantum:
            for weights in self.quantum_parameters():
                weights.requires_grad_(False)
        readout_width = measured + (self.z_width if self.readout == "concat" else 0)
        self.classifier = nn.Linear(readout_width, n_classes).to(dtype)

    def _encoder(self, n_features: int, encoder_qubits: int | None, layers: int, connectivity: int) -> Circuit:
        needed = max(1, (n_features - 1).bit_length())
        width = encoder_qubits if encoder_qubits is not None else max(needed, self.n_qubits)
        if not isinstance(width, int) or width < needed:
            raise ConfigError(f"encoder_qubits={encoder_qubits!r} cannot hold {n_features} amplitudes; use at least "
                              f"{needed} (2**{needed} >= {n_features}), or null for the smallest that fits")
        return encoder_circuit(n_features, width, layers, connectivity)

    def _angles(self, count: int, scale: float) -> nn.Parameter:
        return nn.Parameter((torch.rand(count, dtype=torch.float64) * 2 - 1).mul(scale).to(self.dtype))

    def quantum_parameters(self) -> list[nn.Parameter]:
        """The circuit angles: every encoder's sPQC, then the QPU module (if quantum)."""
        return [*self.encoder_weights, *([self.qpu_weights] if self.qpu_weights is not None else [])]

    def prepare(self, train_features: torch.Tensor) -> None:
        """Fit what is fitted rather than trained: the training mean that `center=True` subtracts."""
        if self.center:
            self.center_vector.copy_(train_features.to(self.dtype).mean(dim=0))

    def amplitudes(self, x: torch.Tensor, part: slice) -> torch.Tensor:
        """What encoder `part` loads (before the simulator's L2 normalisation): the centred slice, unit-normed
        and followed by the constant `bias_amplitude` when that is non-zero."""
        values = self.input_dropout(x - self.center_vector)[:, part]
        if not self.bias_amplitude:
            return values
        unit = values / values.norm(dim=1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
        return torch.cat([unit, torch.full_like(unit[:, :1], self.bias_amplitude)], dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z: the encoders' <Z> outputs [batch, E·Q_c] (exact, as simulated), or the fixed projection."""
        if not self.encoder_circuits:
            x = self.input_dropout(x - self.center_vector)
            return (x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)) @ self.projection
        outputs = [expectation(circuit, weights, self.amplitudes(x, part), "Z", backend=self.backend)
                   for circuit, weights, part in zip(self.encoder_circuits, self.encoder_weights, self.slices)]
        return torch.cat(outputs, dim=1)

    def qpu_inputs(self, z: torch.Tensor) -> torch.Tensor:
        """The Q values that the angle encoding reads (before `angle_scale`)."""
        if self.merge == "linear":
            return torch.tanh(self.merge_layer(z))
        if self.merge == "mean":
            return z.view(z.shape[0], -1, self.n_qubits).mean(dim=1)
        return z[:, torch.arange(self.n_qubits) % z.shape[1]]

    def qpu(self, inputs: torch.Tensor) -> torch.Tensor:
        """The measured values [batch, Q_m]: the QPU module's <Z> (with shots and noise), or the classical block."""
        if self.classical_block is not None:
            return self.classical_block(inputs)
        return estimate_expectation(self.qpu_circuit, self.qpu_weights, self.angle_scale * inputs, self.observables,
                                    backend=self.backend, shots=self.shots, noise=self.noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x.to(self.dtype))
        measured = self.qpu(self.qpu_inputs(z))
        return self.classifier(torch.cat([z, measured], dim=1) if self.readout == "concat" else measured)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters by part, and in total."""
        qpu = nn.ParameterList([self.qpu_weights]) if self.qpu_weights is not None else self.classical_block
        parts = {
            "encoders": trainable_parameter_count(self.encoder_weights),
            "merge": trainable_parameter_count(self.merge_layer) if self.merge_layer is not None else 0,
            "qpu": trainable_parameter_count(qpu),
            "classifier": trainable_parameter_count(self.classifier),
        }
        return {**parts, "total": trainable_parameter_count(self)}
