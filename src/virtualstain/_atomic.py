"""Write files atomically: to a temporary name in the same folder, then rename.

An interrupted write never leaves a half-written file under the final name. The guards every
command that writes files calls before any work: :func:`refuse_overwriting_inputs` (no output is
one of the inputs, also through links), :func:`refuse_duplicate_outputs`, :func:`check_output_suffix`
(``--out x.png`` for a TIFF), and :func:`remove_stale_parts` for temporary files of a killed run.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents) and check that files can be written in it.

    Raises
    ------
    UserError
        If the folder cannot be created or written to.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".vs-write-test-"):
            pass
    except OSError as exc:
        raise UserError(
            f"{path}: cannot write to this output folder ({exc.strerror or exc}); "
            "choose another --out folder or fix its permissions"
        ) from None
    return path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    The temporary file keeps ``final``'s suffix so that writers which infer the
    format from the extension behave. On error the temporary file is removed.

    Raises
    ------
    UserError
        ``final`` is an existing folder, or its folder cannot be written.
    """
    final = Path(final)
    if final.is_dir():
        raise UserError(f"{final}: is a folder, so no file can be written under this name; give a file name "
                        "(e.g. --out result.tif) or remove the folder")
    ensure_writable_dir(final.parent)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=".part" + final.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``final`` atomically (UTF-8)."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def write_csv_atomic(final: str | os.PathLike, rows: list[dict], columns: list[str]) -> Path:
    """Write ``rows`` (dicts; missing keys left empty) under ``columns`` as a CSV, atomically."""
    with atomic_path(final) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return Path(final)


def _same_file(a: Path, b: Path) -> bool:
    """Whether writing ``a`` would write ``b``: one file on disk (symlinks, hard links) or one resolved path."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist (yet)
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop: not one of our inputs
        return False


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None],
                              fix_hint: str = "choose another --out folder", flag: str = "--out") -> None:
    """Raise a :class:`UserError` if any of ``outputs`` is one of ``inputs``, before anything is written.

    Paths are compared as files on disk (:func:`os.path.samefile`: through symlinks and hard links)
    and, for outputs that do not exist yet, as resolved paths. ``None`` inputs (options not given)
    are ignored. Call it with every file a command may write and every file it reads.

    Raises
    ------
    UserError
        ``INPUT: --out would write over this input; <fix_hint>``.
    """
    sources = [Path(p) for p in inputs if p is not None]
    for out in map(Path, outputs):
        for source in sources:
            if _same_file(out, source):
                also = "" if os.path.normpath(out) == os.path.normpath(source) else f" (as {out})"
                raise UserError(f"{source}: {flag} would write over this input{also}; {fix_hint}")


def refuse_duplicate_outputs(outputs: Iterable[str | os.PathLike], what: str = "inputs") -> None:
    """Raise a :class:`UserError` if two outputs are the same file (one would silently replace the other)."""
    seen: dict[Path, Path] = {}
    for out in map(Path, outputs):
        key = Path(os.path.normcase(os.path.abspath(out)))
        if key in seen:
            raise UserError(f"{out}: two {what} would write this same output, so one would replace the other; "
                            "rename one of them")
        seen[key] = out


def check_output_suffix(path: str | os.PathLike, suffixes: Sequence[str], what: str, flag: str = "--out") -> Path:
    """Refuse an output file whose suffix does not say what is written (``--out x.png`` for a TIFF)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        wanted = " or ".join(suffixes)
        raise UserError(f"{path}: {flag} must end in {wanted} ({what} is written); "
                        f"e.g. {flag} {path.with_suffix(suffixes[0])}")
    return path


def stale_parts(final: str | os.PathLike, older_than_s: float = 60.0) -> list[Path]:
    """Temporary files that :func:`atomic_path` left beside ``final`` (``.<stem>.*.part<suffix>``) when a run
    was killed, not modified for ``older_than_s`` seconds (a file being written now is younger)."""
    final = Path(final)
    prefix, suffix = f".{final.stem}.", ".part" + final.suffix
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return []
    now = time.time()
    stale = []
    for p in entries:
        if p.name.startswith(prefix) and p.name.endswith(suffix) and len(p.name) > len(prefix) + len(suffix):
            try:
                if p.is_file() and now - p.stat().st_mtime >= older_than_s:
                    stale.append(p)
            except OSError:
                continue
    return stale


def remove_stale_parts(finals: Iterable[str | os.PathLike], older_than_s: float = 60.0) -> list[Path]:
    """Delete :func:`stale_parts` of each of ``finals``; returns what was removed."""
    removed = []
    for final in finals:
        for p in stale_parts(final, older_than_s):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
