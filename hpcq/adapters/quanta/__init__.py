"""QuanTA (Chen et al., NeurIPS 2024): high-rank fine-tuning with one trainable gate per pair of hidden axes,
W_eff = W0 + T(θ) − T(θ0), merged into W for zero inference overhead. PEFT-style API: `get_quanta_model`,
then the model's `merge_and_unload` / `save_pretrained`, and `QuantaModel.from_pretrained`."""

from hpcq.adapters.quanta.axes import choose_axes, gate_pairs, parameter_count
from hpcq.adapters.quanta.config import QuantaConfig
from hpcq.adapters.quanta.layer import QuantaLinear
from hpcq.adapters.quanta.model import QuantaModel, get_quanta_model

__all__ = [
    "QuantaConfig",
    "QuantaLinear",
    "QuantaModel",
    "choose_axes",
    "gate_pairs",
    "get_quanta_model",
    "parameter_count",
]
