"""QuanTA (Chen et al., NeurIPS 2024): high-rank fine-tuning with one trainable gate per pair of hidden axes,
W_eff = W0 + T(θ) − T(θ0), merged into W for zero inference overhead. PEFT-style API."""

from hpcq.adapters.quanta.axes import choose_axes, gate_pairs, parameter_count
from hpcq.adapters.quanta.config import QuantaConfig
from hpcq.adapters.quanta.layer import QuantaLinear
from hpcq.adapters.quanta.model import (
    QuantaModel,
    from_pretrained,
    get_quanta_model,
    merge_and_unload,
    save_pretrained,
)

__all__ = [
    "QuantaConfig",
    "QuantaLinear",
    "QuantaModel",
    "choose_axes",
    "from_pretrained",
    "gate_pairs",
    "get_quanta_model",
    "merge_and_unload",
    "parameter_count",
    "save_pretrained",
]
