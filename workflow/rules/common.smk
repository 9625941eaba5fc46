"""The study, loaded once when the workflow loads: hpcq.study validates it (with the checks of the jobs'
own verbs) and expands its run grids, so that a bad study file fails before any job is submitted, with a
message naming the study key. The rule files name its paths, commands and per-job functions."""

from pathlib import Path

from snakemake.exceptions import WorkflowError

from hpcq.study import StudyError, load_study
from hpcq.study.commands import (
    TRAIN,
    job_resources,
    job_threads,
    launch_params,
    per_wildcard_resources,
    per_wildcard_threads,
)

try:
    study = load_study(config, workflow.configfiles, Path(workflow.basedir) / "schemas" / "study.schema.yaml")
except StudyError as err:
    raise WorkflowError(str(err)) from None

paths = study.paths
commands = study.commands
