"""Ablations of the quantum head as named config switches (`model.ablation`).

Each name is a shorthand for QuantumHead keyword values, applied over the rest of the model config, so an
ablation changes exactly what its description says and nothing else.
"""

from __future__ import annotations

from typing import Any

from hpcq.errors import ConfigError

#: name → (QuantumHead keyword overrides, what it tests)
ABLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "none": ({}, "the full head"),
    "no_encoders": ({"encoders": 0}, "no simulated encoders: a fixed random projection feeds the QPU module"),
    "single_reupload": ({"reuploads": 1}, "one angle-encoding block instead of several"),
    "no_pqc2": ({"pqc2": False}, "no PQC2 after the re-uploading blocks"),
    "nearest_neighbour": ({"connectivity": 1, "encoder_connectivity": 1},
                          "nearest-neighbour rings only (C = 1), in the encoders and the QPU module"),
    "frozen_quantum": ({"freeze_quantum": True}, "quantum weights frozen at their random initial values"),
    "classical_block": ({"qpu_block": "classical"},
                        "a tanh MLP with the QPU module's parameter count in place of the QPU module"),
}


def apply_ablation(head_kwargs: dict[str, Any], ablation: str) -> dict[str, Any]:
    """`head_kwargs` with the ablation's overrides applied (a new dict)."""
    if ablation not in ABLATIONS:
        raise ConfigError(f"model.ablation={ablation!r} is not one of {', '.join(ABLATIONS)}")
    return {**head_kwargs, **ABLATIONS[ablation][0]}
