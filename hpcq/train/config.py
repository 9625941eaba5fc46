"""Run configuration: a YAML file plus `--set key=value` overrides, validated against the task's schema.

Each task (`head`, `glue`, `joint`, `causal_lm`) has a JSON Schema in `hpcq/train/schemas/<task>.schema.yaml`
whose `default:` values fill in what the file leaves out, so a result file always records the full config.
Task `setfit` is task head's schema plus the `setfit:` section of `setfit.schema.yaml`.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from hpcq.errors import ConfigError
from hpcq.yamlfile import parse_yaml, read_yaml_file

TASKS = ("head", "glue", "joint", "causal_lm", "setfit")


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-parsed value (`3` → int, `1e-3` → float, `null` → None)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form key=value (e.g. model.n_qubits=12)")
    key, raw = assignment.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {assignment!r} has an empty key")
    fix = f"fix the value (e.g. {path[-1]}=[1, 2] for a list; quote a string with brackets or a colon)"
    return path, parse_yaml(raw, f"override {assignment!r}", fix) if raw.strip() else ""


def apply_overrides(config: dict, assignments: list[str]) -> dict:
    """Return a copy of `config` with each `key.path=value` assignment applied."""
    result = copy.deepcopy(config)
    for assignment in assignments:
        path, value = parse_override(assignment)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {assignment!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _schema_file(name: str) -> dict:
    return yaml.safe_load(resources.files("hpcq.train.schemas").joinpath(f"{name}.schema.yaml").read_text())


@functools.cache  # parsed once per process: a study expands hundreds of run configs when it loads
def _schema(task: str) -> dict:
    if task != "setfit":
        return _schema_file(task)
    # A SetFit run is a head run whose embeddings come from a body it tunes first: the same data, model, train
    # and energy sections, so one schema serves both, and the setfit section is added.
    schema = _schema_file("head")
    schema["title"] = "hpcq run config (task setfit)"
    schema["properties"]["task"] = {"const": "setfit"}
    schema["properties"]["setfit"] = _schema_file("setfit")
    return schema


def _whole_int(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 8.0 as an integer, but Python code given 8.0 fails later (range(), tensor shapes).
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache  # one validator class, not one per validated config
def _fill_defaults(validator_class: type) -> type:
    """A validator that writes each property's `default` into the instance before validating it, and takes
    only Python ints (not 8.0) as `integer`."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults},
                                        type_checker=validator_class.TYPE_CHECKER.redefine("integer", _whole_int))


def schema_validator(schema: dict) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator of `schema` that fills defaults in place and refuses 8.0 for an integer."""
    return _fill_defaults(jsonschema.Draft202012Validator)(schema)


def validate_config(config: dict) -> dict:
    """Validate against the task's schema, filling defaults; raise ConfigError naming the bad key."""
    task = config.get("task")
    if task not in TASKS:
        raise ConfigError(f"task: {task!r} is not one of {', '.join(TASKS)}; set `task:` in the run config")
    filled = copy.deepcopy(config)
    validator = schema_validator(_schema(task))
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{key}: {err.message} (fix it in the run config or with --set {key}=...)")
    return filled


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> dict:
    """Read a run config file (or start empty), apply overrides, validate and fill defaults."""
    config: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"run config {path} does not exist; pass an existing YAML file to --config")
        config = read_yaml_file(path, "run config") or {}
        if not isinstance(config, dict):
            raise ConfigError(f"run config {path} must be a mapping of keys, not {type(config).__name__}")
    return validate_config(apply_overrides(config, overrides or []))
