"""Heads on sentence embeddings: the paper's quantum head, classical baselines, ablation switches."""

from hpcq.models.ablations import ABLATIONS, apply_ablation
from hpcq.models.circuits import reuploading_circuit
from hpcq.models.classical import (
    MLPHead, TanhBlock, matched_hidden_width, matched_mlp_shape, mlp_parameter_count, trainable_parameter_count,
)
from hpcq.models.factory import TORCH_KINDS, build_head, matched_parameter_budget, quantum_head_kwargs
from hpcq.models.quantum_head import QuantumHead
from hpcq.models.sklearn_heads import SKLEARN_KINDS, SklearnFit, fit_sklearn_head

__all__ = [
    "ABLATIONS", "SKLEARN_KINDS", "TORCH_KINDS", "MLPHead", "QuantumHead", "SklearnFit", "TanhBlock",
    "apply_ablation", "build_head", "fit_sklearn_head", "matched_hidden_width", "matched_mlp_shape",
    "matched_parameter_budget", "mlp_parameter_count", "quantum_head_kwargs", "reuploading_circuit",
    "trainable_parameter_count",
]
