"""`hpcq aggregate`: every run file under a folder into one tidy table (one row per run).

Columns: the flattened config (dotted keys as in `flatten_config`, unprefixed, e.g. `model.n_qubits`),
`run_id`, `run_kind`, `run_created`, `run_path`, `hpcq_version`, and the scalars of each group
prefixed by its name: `final.*`, `timing.*`, `energy.*`, `env.*`. Curves (`metrics/`) go to a second,
long table (run_id, metric, step, value). Files that cannot be read are listed and skipped, and so are copies
of a run already read (the same run_id), which would otherwise count twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from hpcq.errors import ConfigError, DataError
from hpcq.results.flatten import flatten_config
from hpcq.results.schema import RunRecord, read_run

RUN_SUFFIXES = (".h5", ".hdf5")
RUNS_TABLE = "runs"
CURVES_TABLE = "curves"
SKIPPED_FILE = "skipped.csv"
GROUP_PREFIXES = ("final", "timing", "energy", "env")
RUN_COLUMNS = ("run_id", "run_kind", "run_created", "run_path", "hpcq_version")
_PROGRESS_FROM = 20  # files; fewer read too fast for a bar to help


@dataclass
class AggregateResult:
    """The aggregated tables and where they were written."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    skipped: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def config_columns(self) -> list[str]:
        return config_columns(self.runs)


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The columns of `runs` that came from the flattened config."""
    prefixes = tuple(f"{group}." for group in GROUP_PREFIXES)
    return [c for c in runs.columns if c not in RUN_COLUMNS and not c.startswith(prefixes)]


def find_run_files(results_dir: Path) -> list[Path]:
    """Run files below `results_dir`, recursively, in a stable order (temporary `.tmp` files never match)."""
    return sorted(p for p in results_dir.rglob("*") if p.suffix in RUN_SUFFIXES and p.is_file())


def _scalars(mapping: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Scalar entries of a (nested) group as `prefix.key` columns; arrays are left to other tables."""
    row: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            row.update(_scalars(value, name))
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            row[name] = value.item()
        elif value is None or isinstance(value, (str, bool, int, float)):
            row[name] = value
    return row


def run_row(record: RunRecord, results_dir: Path) -> dict[str, Any]:
    """One table row for one run."""
    row: dict[str, Any] = {
        "run_id": record.run_id,
        "run_kind": record.kind,
        "run_created": record.attrs.get("created"),
        "run_path": str(record.path.relative_to(results_dir)),
        "hpcq_version": record.attrs.get("hpcq_version"),
    }
    row.update(flatten_config(record.config))
    for group in GROUP_PREFIXES:
        row.update(_scalars(getattr(record, group), group))
    return row


def _curve_rows(record: RunRecord) -> Iterable[dict[str, Any]]:
    for name, value in _flat_arrays(record.metrics):
        for step, item in enumerate(value):
            yield {"run_id": record.run_id, "metric": name, "step": step, "value": float(item)}


def _flat_arrays(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, np.ndarray]]:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            yield from _flat_arrays(value, f"{prefix}{key}/")
        elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
            yield f"{prefix}{key}", value


def _uniform_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing numbers and text (e.g. noise: null / "depolarizing") become text, so Parquet accepts them."""
    frame = frame.copy()
    for column in frame.columns[frame.dtypes == object]:
        values = frame[column].dropna()
        kinds = {type(v) for v in values}
        if len(kinds) > 1 and not kinds <= {int, float, bool}:
            frame[column] = frame[column].map(lambda v: v if v is None or pd.isna(v) else
                                              (v if isinstance(v, str) else json.dumps(v)))
    return frame


def read_runs(paths: list[Path], results_dir: Path, progress: bool = True
              ) -> tuple[list[RunRecord], list[dict[str, str]]]:
    """Read run files; unreadable ones become (path, reason) entries instead of errors."""
    records, skipped = [], []
    bar = tqdm(paths, desc="reading runs", unit="file", disable=not progress or len(paths) < _PROGRESS_FROM)
    for path in bar:
        try:
            records.append(read_run(path))
        except DataError as err:
            skipped.append({"path": str(path.relative_to(results_dir)), "reason": str(err)})
    return records, skipped


def drop_duplicate_runs(records: list[RunRecord], results_dir: Path
                        ) -> tuple[list[RunRecord], list[dict[str, str]]]:
    """The first file of each run_id, and a skipped entry for each later one: a copied or linked run file would
    otherwise count twice, inflating n and narrowing every interval."""
    kept: dict[str, RunRecord] = {}
    duplicates = []
    for record in records:
        first = kept.setdefault(record.run_id, record)
        if first is not record:
            duplicates.append({
                "path": str(record.path.relative_to(results_dir)),
                "reason": f"same run_id {record.run_id} as {first.path.relative_to(results_dir)}, a copy of the "
                          f"same run; counted once, delete one of the two",
            })
    return list(kept.values()), duplicates


def collect_runs(results_dir: Path, *, progress: bool = True) -> AggregateResult:
    """Read every run file under `results_dir` into tables in memory (nothing is written)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"results directory {results_dir} does not exist; pass the folder holding run files")
    paths = find_run_files(results_dir)
    if not paths:
        raise ConfigError(f"no run files (*.h5, *.hdf5) under {results_dir}; is this the right results folder?")
    records, skipped_rows = read_runs(paths, results_dir, progress)
    records, duplicates = drop_duplicate_runs(records, results_dir)
    skipped_rows += duplicates
    runs = _uniform_types(pd.DataFrame([run_row(r, results_dir) for r in records]))
    curves = pd.DataFrame([row for r in records for row in _curve_rows(r)],
                          columns=["run_id", "metric", "step", "value"])
    return AggregateResult(runs=runs, curves=curves, skipped=pd.DataFrame(skipped_rows, columns=["path", "reason"]))


def aggregate(results_dir: Path, out_dir: Path, *, progress: bool = True) -> AggregateResult:
    """Aggregate every run file under `results_dir` into `out_dir`.

    Writes runs.parquet + runs.csv (one row per run), curves.parquet + curves.csv (metrics/ curves in long
    form) and skipped.csv (files that could not be read or repeat a run, with the reason). They never stop it.
    """
    result = collect_runs(results_dir, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in ((RUNS_TABLE, result.runs), (CURVES_TABLE, result.curves)):
        for suffix, writer in (("parquet", table.to_parquet), ("csv", table.to_csv)):
            result.files[f"{name}.{suffix}"] = out_dir / f"{name}.{suffix}"
            writer(result.files[f"{name}.{suffix}"], index=False)
    result.files[SKIPPED_FILE] = out_dir / SKIPPED_FILE
    result.skipped.to_csv(result.files[SKIPPED_FILE], index=False)
    return result


def runs_from(source: Path, *, progress: bool = True) -> AggregateResult:
    """Tables from an aggregate folder (runs.parquet) or, read now, from a results folder."""
    source = Path(source)
    if (source / f"{RUNS_TABLE}.parquet").is_file():
        return load_aggregate(source)
    return collect_runs(source, progress=progress)


def load_aggregate(aggregate_dir: Path) -> AggregateResult:
    """Read back what `aggregate` wrote."""
    aggregate_dir = Path(aggregate_dir)
    runs_path = aggregate_dir / f"{RUNS_TABLE}.parquet"
    if not runs_path.is_file():
        raise DataError(f"{aggregate_dir} holds no {runs_path.name}; run `hpcq aggregate RESULTS_DIR --out {aggregate_dir}`")
    curves_path = aggregate_dir / f"{CURVES_TABLE}.parquet"
    skipped_path = aggregate_dir / SKIPPED_FILE
    return AggregateResult(
        runs=pd.read_parquet(runs_path),
        curves=pd.read_parquet(curves_path) if curves_path.is_file() else pd.DataFrame(
            columns=["run_id", "metric", "step", "value"]),
        skipped=pd.read_csv(skipped_path) if skipped_path.is_file() else pd.DataFrame(columns=["path", "reason"]),
        files={p.name: p for p in aggregate_dir.iterdir()},
    )


def summary_lines(result: AggregateResult, out_dir: Path) -> list[str]:
    """What the CLI prints: counts, kinds, skipped files with reasons, where the tables went."""
    kinds = result.runs["run_kind"].value_counts().to_dict() if len(result.runs) else {}
    lines = [f"aggregated {len(result.runs)} runs ({', '.join(f'{k}: {n}' for k, n in kinds.items()) or 'none'})"
             f" into {out_dir}"]
    if len(result.skipped):
        lines.append(f"skipped {len(result.skipped)} unreadable or duplicate file(s) (listed in "
                     f"{out_dir / SKIPPED_FILE}):")
        lines += [f"  {row.path}: {row.reason}" for row in result.skipped.itertuples()]
    return lines
