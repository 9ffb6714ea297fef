"""``model.json`` of a bundle, read and checked without torch (``virtualstain info --json``, quick checks).

Since virtualstain 0.2 ``model.json`` records ``model_json_sha256``: the SHA-256 of its own content
without that key, in canonical form (keys sorted, no spaces, UTF-8), so an edit or damage is detected
while a re-indented file still reads. Its ``weights_sha256`` covers the weights, so the whole bundle is
checked. Bundles written before (no ``model_json_sha256``, e.g. format 1) are read as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .._version import __version__
from ..errors import UserError

FORMAT_VERSION = 2
WEIGHTS = "weights.safetensors"
META = "model.json"
CHECKSUM = "weights.sha256"
#: The key of ``model.json`` that holds the SHA-256 of the rest of it.
META_HASH_KEY = "model_json_sha256"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def meta_sha256(meta: dict) -> str:
    """SHA-256 of ``meta`` without :data:`META_HASH_KEY`, in canonical JSON (sorted keys, compact, UTF-8)."""
    body = {k: v for k, v in meta.items() if k != META_HASH_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(meta: dict) -> dict:
    """``meta`` with its :data:`META_HASH_KEY` set (what :func:`~virtualstain.models.bundle.save_bundle` writes)."""
    canonical = json.loads(json.dumps({k: v for k, v in meta.items() if k != META_HASH_KEY}))
    return {**meta, META_HASH_KEY: meta_sha256(canonical)}


def bundle_folder(folder: str | os.PathLike) -> Path:
    """The bundle folder (``folder`` itself, or the folder of a given ``model.json``)."""
    folder = Path(folder)
    if folder.is_file() and folder.name == META:
        return folder.parent
    return folder


def read_meta(folder: str | os.PathLike) -> dict:
    """Read and check ``model.json`` of a bundle (JSON only: no torch, no weights).

    Checks that it is a JSON object, that its format is one this version reads, and (bundles saved
    since ``model_json_sha256`` exists) that its content matches the SHA-256 it records.

    Raises
    ------
    UserError
        Missing folder or file, unreadable JSON, a newer format, an edited or damaged ``model.json``.
    """
    folder = bundle_folder(folder)
    if not folder.exists():
        raise UserError(f"{folder}: model not found; give the bundle folder written by `virtualstain train` (RUN/model)")
    meta_path = folder / META
    if not meta_path.exists():
        raise UserError(f"{folder}: not a model bundle (no {META}); give the folder RUN/model written by training")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path}: unreadable JSON ({exc}); the bundle is damaged — retrain or restore it") from None
    except OSError as exc:
        raise UserError(f"{meta_path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: holds a JSON {type(meta).__name__}, not an object; the bundle is damaged — "
                        "retrain or restore it")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise UserError(f"{meta_path}: bundle format {version!r} was written by virtualstain "
                        f"{meta.get('package_version', '?')}; this is {__version__} (format {FORMAT_VERSION}) — "
                        "upgrade virtualstain to load it")
    recorded = meta.get(META_HASH_KEY)
    if recorded is not None and recorded != meta_sha256(meta):
        raise UserError(f"{meta_path}: its content does not match the SHA-256 it records ({META_HASH_KEY}); "
                        f"{META} was edited or damaged after saving — restore the bundle from a copy, or retrain")
    return meta
