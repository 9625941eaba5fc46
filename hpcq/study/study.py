"""A loaded study: its validated config, paths, expanded run grids and scaling entries, and what the
workflow's rules ask of it (inputs and params per job's wildcards, wildcard constraints, targets)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcq.study.commands import Commands
from hpcq.study.grid import FAMILIES, Experiment, Prepared, Run, expand_family
from hpcq.study.paths import StudyPaths
from hpcq.study.validate import (check_data_paths, check_energy_config, check_scaling, check_study_files,
                                 scale_options, validate_study)


def names_matching(names: Iterable[str]) -> str:
    """A wildcard constraint that accepts exactly these names (none: a pattern that never matches)."""
    return "|".join(map(re.escape, names)) or "(?!)"


@dataclass
class Study:
    """A study as `load_study` validated and expanded it. Methods of the wildcards serve as the rules' input,
    params, threads and resources functions."""

    config: dict[str, Any]
    paths: StudyPaths
    commands: Commands
    experiments: dict[str, dict[str, Experiment]]
    scaling: dict[str, dict[str, Any]]
    prepared: dict[str, Prepared]

    @property
    def name(self) -> str:
        return self.config["study"]

    # --- train runs -----------------------------------------------------------------------------------

    def experiment_spec(self, wildcards: Any) -> dict[str, Any]:
        return self.experiments[wildcards.family][wildcards.experiment].spec

    def run_of(self, wildcards: Any) -> Run:
        return self.experiments[wildcards.family][wildcards.experiment].runs[wildcards.run]

    def staged(self, dataset: str) -> str:
        """A staged data set (made by the stage rule when data.source is set)."""
        return self.paths.staged.format(dataset=dataset)

    def train_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Run config plus the embeddings or token shards the run reads (the staged data, for other runs)."""
        prepared = self.run_of(wildcards).prepared
        data = prepared.folder if prepared else list(map(self.staged, self.config["data"]["datasets"]))
        return {"config": self.experiment_spec(wildcards)["config"], "data": data}

    def train_overrides(self, wildcards: Any) -> str:
        """The `--set` arguments of one run."""
        return " ".join(f"--set {shlex.quote(assignment)}" for assignment in self.run_of(wildcards).overrides)

    def adapter_ranks(self, wildcards: Any) -> int:
        return self.experiment_spec(wildcards)["ranks"]

    def adapter_names(self, mpi: bool) -> str:
        """Adapter experiments of one rule: data parallel (ranks > 1) or not."""
        adapters = self.experiments["adapters"].items()
        return names_matching(name for name, e in adapters if (e.spec["ranks"] > 1) == mpi)

    def prepared_by(self, pattern: str) -> tuple[Callable[[Any], str], Callable[[Any], str]]:
        """Input and params functions of the rule whose output folders follow `pattern` (embed, tokenize)."""

        def prepared(wildcards: Any) -> Prepared:
            return self.prepared[pattern.format(**wildcards)]

        return (lambda wildcards: self.staged(prepared(wildcards).dataset)), (lambda w: prepared(w).arguments)

    # --- scaling benchmarks ---------------------------------------------------------------------------

    def scaling_spec(self, wildcards: Any) -> dict[str, Any]:
        return self.scaling[wildcards.name]

    def scaling_options(self, wildcards: Any) -> str:
        """`--qubits A..B --ranks R,... --backend B` of a scaling job, as the study load checked them."""
        options = scale_options(self.scaling_spec(wildcards))
        return " ".join(f"--{option} {value}" for option, value in options.items())

    def scaling_tasks(self, wildcards: Any) -> int:
        return max(self.scaling_spec(wildcards)["ranks"])

    def scaling_names(self, mpi: bool) -> str:
        """Scaling entries of one rule: several ranks (MPI) or one."""
        entries = self.scaling.items()
        return names_matching(name for name, entry in entries if (max(entry["ranks"]) > 1) == mpi)

    # --- targets --------------------------------------------------------------------------------------

    def scaling_outputs(self) -> list[str]:
        """Each scaling entry's summary file and folder of per-run files."""
        patterns = (self.paths.scaling, self.paths.scaling_runs)
        return [pattern.format(name=name) for name in self.scaling for pattern in patterns]

    def runs(self) -> list[str]:
        """Every HDF5 result of the study: the train runs of all families, then the scaling benchmarks."""
        runs = [self.paths.run.format(family=family, experiment=name, run=run)
                for family, experiments in self.experiments.items()
                for name, experiment in experiments.items() for run in experiment.runs]
        return runs + self.scaling_outputs()

    def targets(self) -> list[str]:
        """Default targets: the runs, their aggregate, and the energy model and report when configured."""
        targets = self.runs() + [self.paths.aggregate]
        if "energy" in self.config:
            targets.append(self.paths.energy)
        if self.config["report"]:
            targets.append(self.paths.report)
        return targets

    def summary(self) -> str:
        """Where to look once the workflow has finished: the report page if there is one, else the results."""
        pages = sorted(Path(self.paths.report).glob("*.html"))
        return f"report: {pages[0]}" if pages else f"results in {self.paths.results}/"


def load_study(config: dict[str, Any], files: Iterable[str | Path], schema: Path) -> Study:
    """Validate a study (the merged config of its `files`) against `schema`, filling defaults in place, check
    what its jobs would refuse, and expand its run grids; raise StudyError naming the key of the first
    problem."""
    check_study_files(files)
    validate_study(config, schema)
    paths = StudyPaths.of(config)
    check_data_paths(config["data"], paths.data_root, paths.data_source)
    check_scaling(config["scaling"])
    check_energy_config(config.get("energy"))
    experiments = {family: expand_family(family, config[family], paths, config["data"]["datasets"])
                   for family in FAMILIES}
    prepared = {run.prepared.folder: run.prepared for family in experiments.values()
                for experiment in family.values() for run in experiment.runs.values() if run.prepared}
    return Study(config, paths, Commands(paths.data_root, config["container_exec"]), experiments,
                 {entry["name"]: entry for entry in config["scaling"]}, prepared)
