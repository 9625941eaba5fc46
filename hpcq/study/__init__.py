"""Studies: the YAML grid of runs, scaling benchmarks and analysis steps that the workflow turns into jobs.

`load_study` validates a study file when the workflow loads, with hpcq's own checks of each run and
benchmark, expands its run grids and returns a `Study`, whose paths, commands and per-job functions the
rule files name. Modules: `validate` (loading and validation), `grid` (run-grid expansion), `paths`,
`commands` (command lines, threads and resources), `study` (the loaded study).
"""

from hpcq.study.study import Study, load_study
from hpcq.study.validate import StudyError

__all__ = ["Study", "StudyError", "load_study"]
