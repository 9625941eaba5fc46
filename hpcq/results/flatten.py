"""Nested configs as flat, tabular rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"n_qubits": 10}}` → `{"model.n_qubits": 10}`.

    Every value in the result is a scalar (None, bool, int, float or str) so it fits a table column:
    lists and tuples become their JSON text.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat
