"""Run grids: each experiment of a study family (quantum_heads, classical_heads, adapters) is the Cartesian
product of its grid × seeds; each distinct grid point is resolved as `hpcq train` will resolve it and
validated by hpcq's run-config schema, so a bad point fails when the study loads, naming the study key."""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpcq.errors import HpcqError
from hpcq.study.paths import StudyPaths, model_slug
from hpcq.study.validate import StudyError
from hpcq.train.config import apply_overrides, validate_config
from hpcq.yamlfile import read_yaml_file

FAMILIES = ("quantum_heads", "classical_heads", "adapters")
# The staged data set that GLUE token shards are made from.
GLUE = "glue"


@dataclass(frozen=True)
class Prepared:
    """Shards a run reads, made once by the embed or tokenize rule: the run-config key that points the run
    at their folder, the folder, the staged data set they are made from, and the verb's arguments."""

    key: str
    folder: str
    dataset: str
    arguments: str


@dataclass(frozen=True)
class Run:
    """One `hpcq train` invocation: its `--set` assignments and the prepared shards (or None) it reads."""

    overrides: tuple[str, ...]
    prepared: Prepared | None


@dataclass
class Experiment:
    """A run grid of one family: its study entry and run id → Run."""

    spec: dict[str, Any]
    runs: dict[str, Run] = field(default_factory=dict)


def prepared_input(run: dict[str, Any], paths: StudyPaths) -> Prepared | None:
    """What a resolved run config reads: sentence embeddings (task head), GLUE token shards (task glue), or
    None (the run reads staged data itself, as joint runs do). hpcq.train's schemas define these keys."""
    data = run["data"]
    if run["task"] == "head":
        folder = paths.embeddings.format(dataset=data["dataset"], model=model_slug(data["model"]))
        arguments = f"--dataset {shlex.quote(data['dataset'])} --model {shlex.quote(data['model'])}"
        return Prepared("data.embeddings_dir", folder, data["dataset"].split("/")[0], arguments)
    if run["task"] == "glue":
        folder = paths.tokens.format(task=data["glue_task"], model=model_slug(data["model"]),
                                     max_length=data["max_length"])
        arguments = (f"--task {data['glue_task']} --model {shlex.quote(data['model'])}"
                     f" --max-length {data['max_length']}")
        return Prepared("data.tokens_dir", folder, GLUE, arguments)
    return None


def value_slug(value: Any) -> str:
    """A short, path-safe spelling of a grid value (list items and mapping entries join with `+`)."""
    if isinstance(value, dict):
        return "+".join(f"{k}-{value_slug(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "+".join(value_slug(v) for v in value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", str(value).lower() if isinstance(value, bool) else str(value))


def override(key: str, value: Any) -> str:
    """One `--set key=value` assignment; the value is YAML, so hpcq parses it back to the same type."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    # safe_dump ends a bare scalar with the document end marker "...".
    return f"{key}={text.removesuffix(chr(10) + '...')}"


def short_keys(grid_keys: list[str], key: str) -> dict[str, str]:
    """Last component of each dotted grid key, for readable run ids; reject keys whose ids would clash."""
    shorts: dict[str, str] = {}
    for dotted in grid_keys:
        short = dotted.rsplit(".", 1)[-1]
        if short in shorts.values() or short == "seed":
            raise StudyError(f"{key}.grid",
                             f"{dotted!r} ends in {short!r} like another key; run ids would clash")
        shorts[dotted] = short
    return shorts


def read_run_config(path: str, key: str) -> dict[str, Any]:
    """A run config file's mapping, read once per experiment (a grid has hundreds of points)."""
    if not Path(path).is_file():
        raise StudyError(key, f"run config {path!r} does not exist; write it or fix the path")
    try:
        base = read_yaml_file(path, "run config") or {}
    except HpcqError as err:
        raise StudyError(key, str(err)) from None
    if not isinstance(base, dict):
        raise StudyError(key, f"run config {path!r} must be a mapping of keys, not {type(base).__name__}")
    return base


def resolve_run(base: dict[str, Any], overrides: list[str], point_key: str, paths: StudyPaths,
                datasets: list[str]) -> Prepared | None:
    """The shards (or None) of the run hpcq will train (what `hpcq train --config FILE --set ...` resolves:
    the file, the overrides, the task schema's defaults), validated by hpcq's own schema."""
    try:
        run = validate_config(apply_overrides(base, overrides))
    except HpcqError as err:
        raise StudyError(point_key, str(err)) from None
    prepared = prepared_input(run, paths)
    if prepared and run["data"].get(prepared.key.split(".")[1]) is not None:
        raise StudyError(point_key, f"{prepared.key} is set; leave it unset: the workflow makes the shards")
    if prepared and prepared.dataset not in datasets:
        raise StudyError(point_key, f"the run reads data set {prepared.dataset!r}; add it to data.datasets")
    return prepared


def expand(family: str, index: int, spec: dict[str, Any], paths: StudyPaths,
           datasets: list[str]) -> Experiment:
    """Cartesian product of grid × seeds of the study entry `family[index]`; each distinct grid point
    resolved and validated once."""
    key = f"{family}[{index}]"
    base = read_run_config(spec["config"], f"{key}.config")
    fixed = [override(k, v) for k, v in spec["set"].items()]
    shorts = short_keys(list(spec["grid"]), key)
    experiment = Experiment(spec)
    for values in itertools.product(*spec["grid"].values()):
        point = dict(zip(spec["grid"], values))
        varying = [override(k, v) for k, v in point.items()]
        named = ", ".join(f"{k}={v!r}" for k, v in point.items())
        point_key = f"{key}.grid[{named}]" if point else f"{key}.set"
        prepared = resolve_run(base, fixed + varying, point_key, paths, datasets)
        where = [override(prepared.key, prepared.folder)] if prepared else []
        for seed in spec["seeds"]:
            run_id = "_".join([f"{shorts[k]}-{value_slug(v)}" for k, v in point.items()] + [f"seed-{seed}"])
            if run_id in experiment.runs:
                raise StudyError(f"{key}.grid",
                                 f"two grid points share the run id {run_id!r}; use distinct values")
            experiment.runs[run_id] = Run(tuple(fixed + varying + where + [override("seed", seed)]), prepared)
    return experiment


def expand_family(family: str, specs: list[dict[str, Any]], paths: StudyPaths,
                  datasets: list[str]) -> dict[str, Experiment]:
    """Every experiment of one family by name; names must be unique within the family."""
    experiments: dict[str, Experiment] = {}
    for index, spec in enumerate(specs):
        if spec["name"] in experiments:
            raise StudyError(f"{family}[{index}].name", f"{spec['name']!r} is used twice in {family}")
        experiments[spec["name"]] = expand(family, index, spec, paths, datasets)
    return experiments
