"""The HDF5 run file: one run (training, benchmark, simulation) = one file, written atomically.

Layout (schema version 1)::

    /                 attrs: hpcq_version, schema_version, run_id, kind, created (ISO 8601, UTC)
    /config           0-d UTF-8 string dataset: the full config as JSON
    /metrics/<name>   curves (per-step and per-epoch arrays)
    /final            test metrics and counts
    /timing           wall times (scalars or per-step arrays)
    /energy           method, joules, mean_watts, interval_s, devices, ... (see hpcq.energy)
    /env              host, CPU/GPU devices, python and library versions, MPI size, SLURM_* variables
    /<extra>          any further groups a caller passes in `extra`

Every group follows one rule: a scalar (number, string, bool, None) is an *attribute* of its group, an
array or list is a *dataset*, and a nested mapping is a *subgroup*. So `final/` (all scalars) lives
entirely in attributes of the `final` group; None is stored as an empty attribute and reads back as None.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import hpcq
from hpcq.errors import ConfigError, DataError
from hpcq.outputs import writing
from hpcq.results.env import collect_env

SCHEMA_VERSION = 1
STANDARD_GROUPS = ("metrics", "final", "timing", "energy", "env")
_REQUIRED_ATTRS = ("hpcq_version", "schema_version", "run_id", "kind", "created")
_STR = h5py.string_dtype("utf-8")


@dataclass
class RunRecord:
    """Everything one run file holds, as plain Python and NumPy values."""

    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.attrs["kind"]

    @property
    def run_id(self) -> str:
        return self.attrs["run_id"]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def config_to_json(config: Mapping) -> str:
    """The config as JSON text; numpy scalars/arrays and paths are converted, anything else is an error."""
    try:
        return json.dumps(config, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"config cannot be stored as JSON ({err}); pass only numbers, strings, lists and mappings"
        ) from err


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bytes, bool, int, float, np.generic))


def _as_array(value: Any, where: str) -> np.ndarray:
    """A rectangular numeric or string array; ragged or mixed sequences are a caller error."""
    try:
        array = np.asarray(value)
    except ValueError:
        array = np.asarray(value, dtype=object)
    if array.dtype.kind == "S":
        array = array.astype(str)
    if array.dtype == object and not all(isinstance(item, str) for item in array.flat):
        raise ConfigError(
            f"value {where!r} is a ragged or mixed sequence; pass a rectangular numeric array or a list of strings"
        )
    return array


def _write_mapping(group: h5py.Group, mapping: Mapping[str, Any]) -> None:
    for key, value in mapping.items():
        key = str(key)
        if isinstance(value, Mapping):
            _write_mapping(group.create_group(key), value)
        elif value is None:
            group.attrs[key] = h5py.Empty("f8")
        elif isinstance(value, str):
            group.attrs.create(key, value, dtype=_STR)
        elif _is_scalar(value):
            group.attrs[key] = value
        else:
            array = _as_array(value, f"{group.name}/{key}")
            if array.dtype.kind in "UO":
                group.create_dataset(key, data=array.astype(object), dtype=_STR)
            else:
                group.create_dataset(key, data=array)


def write_run(
    path: str | os.PathLike,
    *,
    kind: str,
    config: Mapping,
    metrics: Mapping[str, Any] | None = None,
    final: Mapping[str, float | int | str] | None = None,
    timing: Mapping[str, Any] | None = None,
    energy: Mapping | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str | None = None,
) -> Path:
    """Write one run file atomically and return its path.

    The file is written under a temporary name in the same directory and renamed over `path` only when
    complete, so a file that exists at `path` is whole; the temporary file is removed on failure, and a
    failed write (a full disk) is a one-line HpcqError.
    The `env/` group is collected here (host, devices, versions, MPI and Slurm context).
    """
    if not kind or not isinstance(kind, str):
        raise ConfigError(f"run kind {kind!r} must be a non-empty string such as 'train' or 'bench_scale'")
    clash = set(extra or {}) & set(STANDARD_GROUPS + ("config",))
    if clash:
        raise ConfigError(f"extra groups {sorted(clash)} clash with the standard groups; rename them")
    config_json = config_to_json(config)
    # Built in memory, then written in one plain write: HDF5 that meets a full disk itself leaves its handles
    # broken (tracebacks from every object's destructor, then a crash at exit) instead of one clean OSError.
    image = io.BytesIO()
    with h5py.File(image, "w") as handle:
        handle.attrs.create("hpcq_version", hpcq.__version__, dtype=_STR)
        handle.attrs["schema_version"] = SCHEMA_VERSION
        handle.attrs.create("run_id", run_id or uuid.uuid4().hex, dtype=_STR)
        handle.attrs.create("kind", kind, dtype=_STR)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.attrs.create("created", created, dtype=_STR)
        handle.create_dataset("config", data=config_json, dtype=_STR)
        groups = {"metrics": metrics, "final": final, "timing": timing, "energy": energy, "env": collect_env()}
        for name, content in {**groups, **(extra or {})}.items():
            _write_mapping(handle.create_group(name), content or {})
    with writing(Path(path), "run file") as tmp:
        tmp.write_bytes(image.getbuffer())
    return Path(path)


def _plain(value: Any) -> Any:
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_group(group: h5py.Group) -> dict[str, Any]:
    content: dict[str, Any] = {key: _plain(value) for key, value in group.attrs.items()}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            content[key] = _read_group(item)
        elif h5py.check_string_dtype(item.dtype) is not None:
            content[key] = [str(text) for text in item.asstr()[()]]
        else:
            content[key] = item[()]
    return content


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(f"run file {path} is incomplete or corrupt ({why}); delete it and rerun that run")


def read_run(path: str | os.PathLike) -> RunRecord:
    """Read a run file; a truncated, corrupt or foreign file raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"run file {path} does not exist; check the path or rerun that run")
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _plain(value) for key, value in handle.attrs.items()}
            missing = [name for name in _REQUIRED_ATTRS if name not in attrs]
            if missing or "config" not in handle:
                raise _corrupt(path, f"missing {missing or ['config']}; not an hpcq run file?")
            if int(attrs["schema_version"]) > SCHEMA_VERSION:
                raise DataError(
                    f"run file {path} has schema_version {attrs['schema_version']}, newer than this hpcq "
                    f"({SCHEMA_VERSION}); upgrade hpcq to read it"
                )
            config = json.loads(handle["config"].asstr()[()])
            groups = {name: _read_group(handle[name]) if name in handle else {} for name in STANDARD_GROUPS}
            extra = {
                name: _read_group(item)
                for name, item in handle.items()
                if isinstance(item, h5py.Group) and name not in STANDARD_GROUPS
            }
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        raise _corrupt(path, f"{type(err).__name__}: {err}") from err
    return RunRecord(path=path, attrs=attrs, config=config, extra=extra, **groups)
