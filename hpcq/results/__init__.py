"""Run results: the HDF5 run schema (writer, reader), aggregation into one table, screening statistics.

`write_run` / `read_run` are light (h5py only); `aggregate` and the statistics load pandas on first use.
"""

from hpcq.results.flatten import flatten_config
from hpcq.results.schema import SCHEMA_VERSION, RunRecord, read_run, write_run

__all__ = ["SCHEMA_VERSION", "RunRecord", "flatten_config", "read_run", "write_run"]
