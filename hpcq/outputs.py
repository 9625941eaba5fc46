"""Output paths checked before the work, and writes that fail in one line.

A job that cannot write its result must fail in its first second, naming the path and the fix, not after
hours of compute with a traceback. A write that fails anyway (a disk or quota that fills up) is reported the
same way, and `atomic_path` leaves no temporary file behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcq.atomic import atomic_path
from hpcq.errors import ConfigError, HpcqError


def check_output_file(path: Path, option: str) -> Path:
    """`path` if this process can create (or replace) a file there; else a ConfigError naming `option`."""
    if path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a folder (an empty {option} means the current one); name "
                          f"the file to write, e.g. {option} {path / 'run.h5'}")
    _check_writable_folder(path.parent, option, path)
    return path


def check_output_folder(path: Path, option: str) -> Path:
    """`path` if it is (or can be created as) a folder this process can write in; else a ConfigError."""
    _check_writable_folder(path, option, path)
    return path


def check_folder_path(path: Path, option: str) -> Path:
    """`path` unless it, or a folder above it, is a file (read-only folders pass: shards may only be read)."""
    _check_no_file_in_the_way(path, option, path)
    return path


def _check_no_file_in_the_way(folder: Path, option: str, named: Path) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{option} {str(named)!r}: {existing} is a file, not a folder; choose another {option}")


def _check_writable_folder(folder: Path, option: str, named: Path) -> None:
    """Create `folder` if needed and create (and drop) a file in it: the one test that covers permissions,
    read-only mounts and files in the way alike."""
    _check_no_file_in_the_way(folder, option, named)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"{option} {str(named)!r}: cannot write in {folder} ({err.strerror or err}); choose a "
                          "writable path, or fix the folder's permissions") from err


@contextmanager
def writing(path: Path, what: str) -> Iterator[Path]:
    """`atomic_path(path)`, with a failed write turned into a one-line HpcqError naming `what` and `path`.
    h5py and torch report a failed write (disk full, quota, I/O error) as RuntimeError, the OS as OSError."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except (OSError, RuntimeError) as err:
        raise HpcqError(f"could not write {what} {path} ({first_line(err)}); the disk or quota may be full: free "
                        "space there or write elsewhere") from err


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error's message (torch and h5py write several)."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
