"""Where a study's files go: staged data, embeddings and token shards under the data root; run results,
scaling benchmarks, the aggregate, energy model and report under the results folder; one log per job."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any


def model_slug(model: str) -> str:
    """A path component for a model name or local path (`org/name` → `org--name`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "--", model).strip("-")


@dataclass(frozen=True)
class StudyPaths:
    """The folders of one study and the path patterns of its rules (wildcards in braces)."""

    results: str
    logs: str
    data_root: str
    data_source: str | None

    @classmethod
    def of(cls, study: dict[str, Any]) -> StudyPaths:
        """The paths of a validated study (defaults filled): results/<study> and logs/<study> unless set;
        data paths with environment variables expanded, as the jobs see them."""
        data = study["data"]
        return cls(
            results=study.get("results_dir") or f"results/{study['study']}",
            logs=study.get("logs_dir") or f"logs/{study['study']}",
            data_root=os.path.expandvars(data["root"]),
            data_source=os.path.expandvars(data["source"]) if data["source"] else None,
        )

    @property
    def runs(self) -> str:
        return f"{self.results}/runs"

    @property
    def aggregate(self) -> str:
        return f"{self.results}/aggregate"

    @property
    def energy(self) -> str:
        return f"{self.results}/energy"

    @property
    def report(self) -> str:
        return f"{self.results}/report"

    @property
    def staged(self) -> str:
        return f"{self.data_root}/{{dataset}}"

    @property
    def embeddings(self) -> str:
        return f"{self.data_root}/embeddings/{{dataset}}/{{model}}"

    @property
    def tokens(self) -> str:
        return f"{self.data_root}/tokens/{{task}}/{{model}}/L{{max_length}}"

    @property
    def run(self) -> str:
        return f"{self.runs}/{{family}}/{{experiment}}/{{run}}.h5"

    @property
    def run_log(self) -> str:
        return f"{self.logs}/train/{{family}}/{{experiment}}/{{run}}.log"

    @property
    def scaling(self) -> str:
        return f"{self.runs}/scaling/{{name}}.h5"

    @property
    def scaling_runs(self) -> str:
        return f"{self.runs}/scaling/{{name}}"

    def log(self, step: str) -> str:
        """The log of a step (`embed/{dataset}/{model}`, `aggregate`, ...)."""
        return f"{self.logs}/{step}.log"
