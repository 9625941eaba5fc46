"""The precisions circuits are simulated and heads trained in, by the names run configs and `hpcq bench`
options use: float32 or float64 weights and features (complex64 or complex128 states where a circuit needs
complex amplitudes)."""

from __future__ import annotations

import torch

from hpcq.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def dtype_named(name: str, option: str = "--dtype") -> torch.dtype:
    """torch's dtype called `name`; for any other name a ConfigError naming `option` and the choices."""
    if name not in DTYPES:
        raise ConfigError(f"{option} {name!r} must be one of {', '.join(DTYPES)}")
    return DTYPES[name]


def complex_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision as real `dtype` (float32 → complex64, float64 → complex128)."""
    return torch.complex64 if dtype == torch.float32 else torch.complex128
