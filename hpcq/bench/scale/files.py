"""The benchmark's files: one `bench_scale` run file per run and a `bench_scale_summary` with the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_results(report: dict[str, Any], out: Path) -> list[Path]:
    """The summary at `out` and one `bench_scale` run file per run under `out`'s stem folder."""
    from hpcq.results.schema import write_run

    spec = report["spec"]
    config = {"bench": "scale", **{k: v for k, v in spec.items() if k not in ("qubits", "ranks")},
              "circuit": "reuploading_ansatz", "observable": "Z_0", "batch": 1}
    folder = out.parent / out.stem
    paths = []
    for row in report["runs"]:
        final = {k: v for k, v in row.items() if k not in ("energy", "warmup_s")}
        paths.append(write_run(folder / f"n{row['n_qubits']:02d}_r{row['ranks']}.h5", kind="bench_scale",
                               config={**config, "n_qubits": row["n_qubits"], "ranks": row["ranks"]},
                               final=final, timing={"warmup_s": row["warmup_s"],
                                                    "total_s": row["time_per_call_s"] * row["calls"]},
                               energy=row["energy"]))
    columns = {key: [row[key] for row in report["runs"]] for key in report["runs"][0] if key != "energy"}
    tables = {"runs": columns, "skipped": report["skipped"] or [""]}
    for kind in ("strong", "weak"):
        if report[kind]:
            tables[kind] = {key: [entry[key] for entry in report[kind]] for key in report[kind][0]}
    joules = sum(row["energy"]["joules"] for row in report["runs"])
    seconds = sum(row["energy"]["duration_s"] for row in report["runs"])
    energy = {"method": report["runs"][0]["energy"]["method"], "joules": joules,
              "mean_watts": joules / seconds if seconds else 0.0, "duration_s": seconds,
              "interval_s": report["runs"][0]["energy"]["interval_s"],
              "devices": report["runs"][0]["energy"]["devices"], "notes": "sum over the timed runs"}
    final = {"runs": len(report["runs"]), "skipped": len(report["skipped"]),
             "max_qubits": max(row["n_qubits"] for row in report["runs"]),
             "run_folder": str(folder)}
    paths.insert(0, write_run(out, kind="bench_scale_summary", config={**config, "qubits": spec["qubits"],
                                                                       "ranks": spec["ranks"]},
                              final=final, energy=energy, extra={"scaling": tables}))
    return paths
