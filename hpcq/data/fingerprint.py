"""Content checksums of folders: what cached shards are keyed by besides their rows.

A local sentence body's checksum goes into every embedding shard, so that shards of changed weights are never
read as the current body's; a staged data set's checksum is a workflow parameter, so that Snakemake re-makes
the shards of a data set whose files changed (file times alone miss an in-place edit).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hpcq.data.stage import file_sha256


def folder_checksum(folder: Path) -> str:
    """sha256 over every file below `folder`: its path relative to `folder` and its bytes' sha256.

    Dot-paths (`.git`, `.cache`, lock files) are left out: tools write them beside the content.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            digest.update(f"{relative.as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def staged_checksum(dataset: str, root: str | Path, source: str | Path | None) -> str | None:
    """`folder_checksum` of data set `dataset` (`sst2-sentences`, `glue/RTE`) as staged under `root`; before
    staging, of its `source` copy (staging copies files byte for byte, so both give the same value); None when
    neither folder exists."""
    for base in (root, source):
        if base is not None and (Path(base) / dataset).is_dir():
            return folder_checksum(Path(base) / dataset)
    return None
