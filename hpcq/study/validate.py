"""Study-file loading and validation: every check runs when the workflow loads, before any job is submitted,
and each failure names the study key, the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from hpcq.errors import HpcqError
from hpcq.train.config import schema_validator
from hpcq.yamlfile import read_yaml_file


class StudyError(HpcqError):
    """A study value that a job would refuse; the message starts with the study key (None: a whole file)."""

    def __init__(self, key: str | None, message: str):
        super().__init__(f"study config: {key}: {message}" if key else f"study config: {message}")


def schema_key(error: jsonschema.ValidationError) -> str:
    """`quantum_heads[0].grid` for a jsonschema error's instance path."""
    key = ""
    for part in error.absolute_path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key or "(top level)"


def check_study_files(paths: Iterable[str | Path]) -> None:
    """Snakemake reads study files with PyYAML, which keeps the last of two equal keys; hpcq's loader refuses
    them, naming the file, the key and its line."""
    for path in paths:
        try:
            read_yaml_file(path, "study file")
        except HpcqError as err:
            raise StudyError(None, str(err)) from None


def validate_study(study: dict, schema_path: Path) -> None:
    """Validate against the study schema, filling its defaults in place, with hpcq's run-config validator:
    unlike Snakemake's `validate` it refuses 2.0 where the schema wants an integer."""
    schema = read_yaml_file(schema_path, "study schema")
    errors = list(schema_validator(schema).iter_errors(study))
    if errors:
        # best_match descends into allOf/anyOf to the error that names the actual key.
        cause = jsonschema.exceptions.best_match(errors)
        raise StudyError(schema_key(cause), cause.message)


def check_data_paths(data: Mapping[str, Any], root: str, source: str | None) -> None:
    """Every data set must exist where it is read from: data.source when staging, else data.root."""
    if not data["datasets"]:
        return
    base, key = (source, "data.source") if source else (root, "data.root")
    if not Path(base).is_dir():
        fix = ("point it at the folder holding the data sets" if source
               else "stage data there or set data.source")
        raise StudyError(key, f"folder {base!r} does not exist; {fix}")
    for index, dataset in enumerate(data["datasets"]):
        if not (Path(base) / dataset).is_dir():
            raise StudyError(f"data.datasets[{index}]", f"{dataset!r} is not a folder in {key} ({base})")


def scale_options(entry: Mapping[str, Any]) -> dict[str, str]:
    """The `hpcq bench scale` options of a scaling entry, as its job gets them on the command line."""
    return {"qubits": str(entry["qubits"]), "ranks": ",".join(map(str, entry["ranks"])),
            "backend": entry["backend"]}


def check_scaling(entries: list[dict]) -> None:
    """Names unique; each entry one that `hpcq bench scale` accepts (its own parsers and checks: qubit range,
    power-of-two ranks, backend), so that a bad entry fails here and not in its job."""
    if not entries:
        return
    # Imported here: it imports torch, which only studies that scale need to load.
    from hpcq.bench.scale import ScaleSpec, parse_qubits, parse_ranks

    seen = set()
    for index, entry in enumerate(entries):
        if entry["name"] in seen:
            raise StudyError(f"scaling[{index}].name", f"{entry['name']!r} is used twice in scaling")
        seen.add(entry["name"])
        options = scale_options(entry)
        try:
            qubits, ranks = parse_qubits(options["qubits"]), parse_ranks(options["ranks"])
            ScaleSpec(qubits, ranks, options["backend"]).validate()
        except HpcqError as err:
            # The message starts with the option (`--qubits 1..3 ...`), which is the entry's key of that name.
            option = str(err).split()[0].removeprefix("--")
            key = f"scaling[{index}]" + (f".{option}" if option in entry else "")
            raise StudyError(key, f"{err} (as hpcq bench scale checks it; fix it in the study)") from None


def check_energy_config(energy: Mapping[str, Any] | None) -> None:
    """The energy section's crossover config, read and checked as `hpcq energy --config` will."""
    path = (energy or {}).get("config")
    if not path:
        return
    if not Path(path).is_file():
        raise StudyError("energy.config",
                         f"file {path!r} does not exist; fix the path or use null for the default")
    # Imported here: it imports pandas, which only studies with their own energy config need to load.
    from hpcq.energy.crossover import load_config

    try:
        load_config(Path(path))
    except HpcqError as err:
        raise StudyError("energy.config", str(err)) from None
