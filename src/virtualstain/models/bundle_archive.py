"""A model bundle inside a zip archive (a BioImage Model Zoo package written by
:func:`~virtualstain.export.bmz.export_bmz`), unpacked for :func:`~virtualstain.models.bundle.load_bundle`.

Only the three bundle files (``model.json``, ``weights.safetensors``, ``weights.sha256``) are read from the
archive, wherever they lie in it (a member whose last path component is one of these names); nothing else is
ever extracted. An archive with any member that has an absolute path or a ``..`` component is refused as a
whole. The files are written into ``<cache>/bmz/<SHA-256 of the zip>/`` (``<cache>`` as in
:func:`virtualstain._cache.cache_dir`) through a temporary folder renamed at the end, so an interrupted
extraction never leaves a half-written bundle; the bundle is then loaded by the usual checked path
(``model.json`` hash, weights SHA-256).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from .._cache import cache_dir
from ..errors import UserError
from .bundle_meta import CHECKSUM, META, WEIGHTS, file_sha256

__all__ = ["BUNDLE_FILES", "extract_bundle", "is_archive", "unsafe_member"]

#: The members taken from an archive (by their base name).
BUNDLE_FILES = (META, WEIGHTS, CHECKSUM)
#: Largest uncompressed size accepted for one bundle file (a guard against zip bombs).
MAX_MEMBER_BYTES = 8 << 30

_UMASK = os.umask(0)
os.umask(_UMASK)
_FIX = ("export the model with virtualstain.export.bmz.export_bmz(load_model('RUN/model'), 'model.zip'), "
        "or give the bundle folder RUN/model itself")


def is_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zip archive rather than a bundle folder (``.zip`` suffix, not a folder)."""
    p = Path(path)
    return p.suffix.lower() == ".zip" and not p.is_dir()


def unsafe_member(name: str) -> bool:
    """Whether an archive member name is absolute (``/x``, ``\\x``, ``C:x``) or has a ``..`` component."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return True
    return ".." in text.split("/")




def _bundle_members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's bundle files by base name, after refusing unsafe or ambiguous archives."""
    found: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if unsafe_member(info.filename):
            raise UserError(f"{path}: member {info.filename!r} has an absolute path or a '..' component, so the "
                            f"archive is unsafe and nothing was extracted; {_FIX}")
        if info.is_dir():
            continue
        base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
        if base not in BUNDLE_FILES:
            continue
        if base in found:
            raise UserError(f"{path}: holds {base} twice ({found[base].filename!r} and {info.filename!r}), so it is "
                            f"unclear which model to load; {_FIX}")
        if info.file_size > MAX_MEMBER_BYTES:
            raise UserError(f"{path}: member {info.filename!r} unpacks to {info.file_size} bytes, more than a model "
                            f"bundle holds; the archive is damaged — {_FIX}")
        found[base] = info
    missing = [name for name in (META, WEIGHTS) if name not in found]
    if missing:
        raise UserError(f"{path}: not a virtualstain model package (no {' or '.join(missing)} in it); {_FIX}")
    return found


def extract_bundle(path: str | os.PathLike) -> Path:
    """Unpack the bundle files of the archive ``path`` into the cache and return that bundle folder.

    An archive extracted before (same SHA-256) is not unpacked again.

    Raises
    ------
    UserError
        Missing or unreadable file, not a zip, unsafe members, no bundle in it, an unwritable cache.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model package not found; give the .zip written by export_bmz or the bundle folder "
                        "RUN/model")
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    target = cache_dir() / "bmz" / digest
    if all((target / name).is_file() for name in (META, WEIGHTS)):
        return target
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path}: not a readable zip archive ({exc}); {_FIX}") from None
    with archive:
        members = _bundle_members(archive, path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{digest}.part-"))
        except OSError as exc:
            raise UserError(f"{target.parent}: cannot unpack the model package here ({exc.strerror or exc}); set "
                            "VIRTUALSTAIN_CACHE to a writable folder") from None
        try:
            for base, info in members.items():
                with archive.open(info) as src, open(tmp / base, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.chmod(tmp / base, 0o666 & ~_UMASK)
            os.chmod(tmp, 0o777 & ~_UMASK)
            if target.exists():  # an incomplete earlier folder (the check above found no bundle in it)
                shutil.rmtree(target, ignore_errors=True)
            try:
                tmp.rename(target)
            except OSError:
                if not (target / META).is_file():  # not another process that unpacked the same archive meanwhile
                    raise
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise UserError(f"{path}: could not be unpacked ({exc}); the archive is damaged — {_FIX}") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
