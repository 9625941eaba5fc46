"""Helpers for the workflow and Slurm tests: run the real Snakemake on the real workflow in a scratch folder.

Studies are written into the scratch folder from the shipped ones, with data paths and run configs made
absolute so that the scratch folder can be the working directory.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
STUDIES = sorted((REPO / "config").glob("*.yaml"))
STUDY_SCHEMA = REPO / "workflow" / "schemas" / "study.schema.yaml"
FAMILIES = ("quantum_heads", "classical_heads", "adapters")


def shared_data() -> Path:
    """The shared data sets the tests read (conftest points HPCQ_DATA at them)."""
    return Path(os.environ["HPCQ_DATA"])


def load_study(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())


def absolute_run_configs(study: dict) -> dict:
    """A copy whose run-config paths point into the repository, whatever the working directory."""
    study = copy.deepcopy(study)
    for family in FAMILIES:
        for experiment in study.get(family, []):
            experiment["config"] = str(REPO / experiment["config"])
    return study


def write_study(folder: Path, study: dict, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`snakemake -s workflow/Snakefile --directory WORKDIR ARGS...`, output captured as text."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def job_counts(output: str) -> dict[str, int]:
    """{rule: jobs} from the "Job stats" table Snakemake prints before running (or dry-running)."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = (re.fullmatch(r"\s*(\S+)\s+(\d+)\s*", line) for line in table.splitlines())
    return {row[1]: int(row[2]) for row in rows if row and row[1] != "total"}


def hpcq_verb_available(*verb: str) -> bool:
    """Whether `hpcq VERB --help` works here (verbs land one by one)."""
    hpcq = shutil.which("hpcq")
    return hpcq is not None and subprocess.run([hpcq, *verb, "--help"], capture_output=True).returncode == 0


def scaling_only(tmp_path: Path) -> dict:
    """A valid study that needs no run config: stage a data set, one scaling entry."""
    data = {"source": str(shared_data()), "root": str(tmp_path / "data"), "datasets": ["sst2-sentences"]}
    return {
        "study": "reject",
        "data": data,
        "scaling": [{"name": "small", "qubits": "4..6", "ranks": [1, 2], "backend": "distributed"}],
    }


def head_study(tmp_path: Path, grid: dict, set_: dict | None = None) -> dict:
    """One quantum-head experiment over a minimal run config, embeddings of the shared data."""
    run_config = tmp_path / "head.yaml"
    run_config.write_text("task: head\n")
    experiment = {"name": "grid", "config": str(run_config), "seeds": [0, 1], "set": set_ or {}, "grid": grid}
    study = scaling_only(tmp_path)
    study.update(quantum_heads=[experiment], scaling=[])
    return study
