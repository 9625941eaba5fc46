"""`hpcq stage`: copy data sets into the data root on the login node, verified, so offline jobs find them.

Every file is checked by sha256: against the value its data set's README.md lists where it lists one (the
shared data READMEs have a table row per file), else against the source file itself. Staging is idempotent:
files already in place with the right checksum are left alone, and each copy is renamed into place whole.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from hpcq.atomic import atomic_path
from hpcq.data.paths import data_root
from hpcq.errors import DataError

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class StageReport:
    """Files copied, files already in place, and how many were checked against a README checksum."""

    dest: Path
    copied: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    readme_verified: int = 0


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def readme_checksums(readme: Path) -> dict[Path, str]:
    """{file: sha256} from the Markdown table rows of `readme` whose first cell names a file next to it."""
    listed = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        digests = [cell for cell in cells[1:] if _SHA256.fullmatch(cell)]
        path = readme.parent / cells[0]
        if digests and path.is_file():
            listed[path.resolve()] = digests[0]
    return listed


def _documented_checksums(source: Path, dataset: str) -> dict[Path, str]:
    """Checksums from the README of the data set's top folder and of `dataset`'s own folder."""
    listed: dict[Path, str] = {}
    parts = Path(dataset).parts
    for depth in range(1, len(parts) + 1):
        readme = source.joinpath(*parts[:depth]) / "README.md"
        if readme.is_file():
            listed.update(readme_checksums(readme))
    return listed


def stage(
    source: Path | str,
    dest: Path | str | None = None,
    datasets: Sequence[str] | None = None,
    progress: bool = True,
) -> StageReport:
    """Copy `datasets` (folders under `source`, e.g. "sst2-sentences", "glue" or "glue/RTE"; all of them when
    None) into `dest` (default: the data root), verifying every file's sha256."""
    source = Path(source)
    dest = Path(dest) if dest is not None else data_root()
    if not source.is_dir():
        raise DataError(f"stage source {source} is not a folder; pass the folder that holds the data sets")
    names = list(datasets) if datasets else sorted(p.name for p in source.iterdir() if p.is_dir())
    escaping = [name for name in names if Path(name).is_absolute() or ".." in Path(name).parts]
    if escaping:
        # Files land at dest / their path under source: `..` or an absolute name would write outside dest.
        raise DataError(f"data set name(s) {escaping} reach outside {source} and would be written outside {dest}; "
                        f"name folders under {source}, e.g. sst2-sentences or glue/RTE")
    missing = [name for name in names if not (source / name).is_dir()]
    if missing:
        available = sorted(p.name for p in source.iterdir() if p.is_dir())
        raise DataError(f"data set(s) {missing} not found under {source}; it holds {available}")
    report = StageReport(dest)
    files = [(name, path) for name in names for path in sorted((source / name).rglob("*")) if path.is_file()]
    listed = {name: _documented_checksums(source, name) for name in names}
    in_place = source.resolve() == dest.resolve()
    for name, src in tqdm(files, desc=f"stage into {dest}", unit="file", disable=not progress):
        documented = listed[name].get(src.resolve())
        expected = documented or file_sha256(src)
        dst = dest / src.relative_to(source)
        if dst.is_file() and file_sha256(dst) == expected:
            report.unchanged.append(dst)
        elif in_place:
            raise DataError(
                f"{src} has sha256 {file_sha256(src)} but its README lists {expected}; the file is corrupt, "
                f"fetch the data set again"
            )
        else:
            with atomic_path(dst) as tmp:  # verified before the rename, so a bad copy never lands
                shutil.copyfile(src, tmp)
                actual = file_sha256(tmp)
                if actual != expected:
                    reference = "its README lists" if documented else "the source had"
                    raise DataError(
                        f"{src} copies with sha256 {actual}, but {reference} {expected}; the source copy is "
                        f"corrupt or changed while copying, fetch it again"
                    )
            report.copied.append(dst)
        report.readme_verified += documented is not None
    return report
