"""Build a PyTorch head from the run config's `model` section (kinds quantum, mlp, mlp_matched)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpcq.errors import ConfigError
from hpcq.models.ablations import apply_ablation
from hpcq.models.classical import MLPHead, matched_mlp_shape, trainable_parameter_count
from hpcq.models.quantum_head import QuantumHead

TORCH_KINDS = ("quantum", "mlp", "mlp_matched")
#: model-config keys that are QuantumHead keyword arguments, under the same names
QUANTUM_KEYS = (
    "n_qubits", "layers", "connectivity", "reuploads", "encoders", "encoder_qubits", "measured", "backend", "shots",
    "noise", "encoder_layers", "encoder_connectivity", "encoder_input", "merge", "readout", "shared_pqc1", "pqc2",
    "qpu_block", "freeze_quantum", "angle_scale", "init_scale", "center", "bias_amplitude", "input_dropout",
)


def quantum_head_kwargs(model: dict[str, Any]) -> dict[str, Any]:
    """QuantumHead keyword arguments from the model config, with `model.ablation` applied."""
    return apply_ablation({key: model[key] for key in QUANTUM_KEYS if key in model}, model.get("ablation", "none"))


def build_quantum_head(model: dict[str, Any], in_features: int, n_classes: int, dtype: torch.dtype) -> QuantumHead:
    try:
        return QuantumHead(in_features, n_classes=n_classes, dtype=dtype, **quantum_head_kwargs(model))
    except ConfigError as err:
        # QuantumHead names its argument first ("encoder_qubits=3 ..."): the config key is model.<argument>.
        raise ConfigError(f"model.{err}") from None


def matched_parameter_budget(model: dict[str, Any], in_features: int, n_classes: int) -> int:
    """Trainable parameters of the quantum head this config describes (built without touching the RNG)."""
    with torch.random.fork_rng():
        return trainable_parameter_count(build_quantum_head(model, in_features, n_classes, torch.float64))


def build_head(model: dict[str, Any], in_features: int, n_classes: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The head `model["kind"]` names; `mlp_matched` matches the quantum head of the same config (±5%)."""
    kind = model["kind"]
    if kind == "quantum":
        return build_quantum_head(model, in_features, n_classes, dtype)
    if kind == "mlp":
        return MLPHead(in_features, model["hidden"], n_classes, components=model["components"],
                       input_dropout=model["input_dropout"], dtype=dtype)
    if kind == "mlp_matched":
        target = matched_parameter_budget(model, in_features, n_classes)
        preferred = model["components"] or model["n_qubits"]
        shape = matched_mlp_shape(target, in_features, n_classes, preferred)
        return MLPHead(in_features, [shape.hidden], n_classes, components=shape.components,
                       input_dropout=model["input_dropout"], dtype=dtype)
    raise ConfigError(f"model.kind={kind!r} is not a PyTorch head; choose one of {', '.join(TORCH_KINDS)}")
