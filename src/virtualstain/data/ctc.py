"""Cell Tracking Challenge (CTC) files: tracking results and ground truth.

A result folder (CTC ``RES``) holds one ``maskTTT.tif`` per frame (uint16 track labels, 0 = background; ``TTT``
the 0-based frame, 3 digits, 4 when there are more than 1000 frames) and ``res_track.txt``: one line
``L B E P`` per track (label, first and last frame, parent label or 0). A ground-truth ``TRA`` folder holds
``man_trackTTT.tif`` and ``man_track.txt`` of the same form.

The CTC checker's rules are checked on reading and before writing (:func:`ctc_problems`): labels are unique
and positive; ``0 ≤ B ≤ E < T``; a parent exists and ends before its child begins; every label is present in each
mask from ``B`` to ``E`` and in no other; every label in a mask has a line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tifffile

from .._atomic import atomic_path, ensure_writable_dir, write_text_atomic
from ..errors import UserError

RESULT_TRACKS = "res_track.txt"
REFERENCE_TRACKS = "man_track.txt"
_MASK = re.compile(r"^(mask|man_track)(\d{3,4})\.tif$")


@dataclass(frozen=True)
class CtcRecord:
    """One line ``L B E P`` of a CTC track file."""

    label: int
    start: int
    end: int
    parent: int = 0


@dataclass(frozen=True, eq=False)
class CtcTracks:
    """Tracks read from CTC files.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(T, Y, X)`` track labels of the mask files, frame ``t`` from the file numbered ``t``.
    records : tuple of CtcRecord
        The lines of the track file, in file order.
    track_file : Path
        ``res_track.txt`` or ``man_track.txt``.
    mask_files : tuple of Path
        The mask files, frame order.
    """

    labels: np.ndarray
    records: tuple[CtcRecord, ...]
    track_file: Path
    mask_files: tuple[Path, ...]


class TracksLike(Protocol):
    """What :func:`write_ctc_result` writes: ``(T, Y, X)`` integer track labels and records with
    ``.label``, ``.start``, ``.end``, ``.parent`` (e.g. :class:`virtualstain.analysis.tracking.Tracks`)."""

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def records(self) -> Sequence[Any]: ...


def mask_name(t: int, n_frames: int) -> str:
    """CTC result mask file name of frame ``t``: ``mask007.tif``, or ``mask0007.tif`` beyond 1000 frames."""
    return f"mask{t:04d}.tif" if n_frames > 1000 else f"mask{t:03d}.tif"


def ctc_problems(labels: np.ndarray, records: Sequence[Any], max_problems: int = 5) -> list[str]:
    """What breaks the CTC checker's rules (see the module docstring); empty when the tracks are valid.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(T, Y, X)`` track labels.
    records : sequence
        Objects with ``.label``, ``.start``, ``.end``, ``.parent``.
    """
    labels = np.asarray(labels)
    n_frames = labels.shape[0]
    problems: list[str] = []
    rows = {}
    for r in records:
        label, start, end, parent = int(r.label), int(r.start), int(r.end), int(r.parent)
        if label <= 0 or label in rows:
            problems.append(f"track {label}: labels must be unique and > 0")
        elif not 0 <= start <= end < n_frames:
            problems.append(f"track {label}: frames {start}..{end} are not within 0..{n_frames - 1} (B ≤ E)")
        rows[label] = (start, end, parent)
    for label, (start, _, parent) in rows.items():
        if parent and parent not in rows:
            problems.append(f"track {label}: parent {parent} has no line")
        elif parent and rows[parent][1] >= start:
            problems.append(f"track {label}: begins in frame {start}, but its parent {parent} ends in frame "
                            f"{rows[parent][1]} (a parent must end before its child begins)")
    present: dict[int, set[int]] = {}
    for t, frame in enumerate(labels):
        for label in np.unique(frame):
            if label:
                present.setdefault(int(label), set()).add(t)
    for label in sorted(set(present) - set(rows)):
        problems.append(f"label {label} is in mask frame(s) {_frames(present[label])} but has no line")
    for label, (start, end, _) in rows.items():
        frames = present.get(label, set())
        missing = sorted(set(range(start, end + 1)) - frames)
        outside = sorted(frames - set(range(start, end + 1)))
        if missing:
            problems.append(f"track {label} ({start}..{end}) is missing from mask frame(s) {_frames(missing)} "
                            "(after a gap the CTC format starts a new track whose parent is the old one)")
        if outside:
            problems.append(f"track {label} ({start}..{end}) is also in mask frame(s) {_frames(outside)}")
    return problems[:max_problems]


def _frames(frames) -> str:
    frames = sorted(frames)
    return ", ".join(map(str, frames[:5])) + (", …" if len(frames) > 5 else "")


def write_ctc_result(tracks: TracksLike, folder: str | os.PathLike) -> list[Path]:
    """Write ``maskTTT.tif`` (uint16, LZW like the CTC ground truth) and ``res_track.txt`` into ``folder``.

    Each file is written under a temporary name and then renamed; ``res_track.txt`` comes last, so a folder
    with it is complete. Returns the written files (masks in frame order, then the track file).

    Raises
    ------
    ValueError
        The tracks break the CTC rules (:func:`ctc_problems`) or have labels above 65535.
    UserError
        ``folder`` cannot be written, or already holds mask files that are not frames of this result (an
        earlier, longer result: evaluating the folder would mix them in).
    """
    labels = np.asarray(tracks.labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"track labels must be an integer (T, Y, X) array, got {labels.dtype} {labels.shape}")
    problems = ctc_problems(labels, tracks.records)
    if problems:
        raise ValueError("tracks break the CTC rules: " + "; ".join(problems))
    if labels.size and (labels.max() > np.iinfo(np.uint16).max or labels.min() < 0):
        raise ValueError("CTC masks are uint16: track labels must be within 0..65535")
    out = ensure_writable_dir(folder)
    n = labels.shape[0]
    names = [mask_name(t, n) for t in range(n)]
    foreign = sorted(p.name for p in out.iterdir() if _MASK.match(p.name) and p.name.startswith("mask")
                     and p.name not in set(names))
    if foreign:
        raise UserError(f"{out}: already holds {foreign[0]} (and {len(foreign) - 1} more), not a frame of this "
                        f"{n}-frame result; choose an empty --out folder or remove the old mask files")
    written = []
    for t, name in enumerate(names):
        with atomic_path(out / name) as tmp:
            tifffile.imwrite(tmp, labels[t].astype(np.uint16), compression="lzw", photometric="minisblack")
        written.append(out / name)
    lines = "".join(f"{int(r.label)} {int(r.start)} {int(r.end)} {int(r.parent)}\n"
                    for r in sorted(tracks.records, key=lambda r: int(r.label)))
    written.append(write_text_atomic(out / RESULT_TRACKS, lines))
    return written


def _track_folder(folder: Path) -> tuple[Path, Path]:
    """The folder that holds the track file (``folder`` itself or its ``TRA``/``tra`` sub-folder) and the file."""
    for place in (folder, folder / "TRA", folder / "tra"):
        for name in (RESULT_TRACKS, REFERENCE_TRACKS):
            if (place / name).is_file():
                return place, place / name
    raise UserError(f"{folder}: no {RESULT_TRACKS} or {REFERENCE_TRACKS} here (nor in TRA/); give a CTC result "
                    "folder (maskTTT.tif + res_track.txt) or a ground-truth TRA folder")


def read_track_file(path: str | os.PathLike) -> tuple[CtcRecord, ...]:
    """Parse a CTC track file (``L B E P`` per line, spaces or tabs; blank lines ignored).

    Raises
    ------
    UserError
        A line that is not four integers ≥ 0, naming the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read this track file ({exc}); check the path and that it is plain text") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [int(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) < 0:
            raise UserError(f"{path}: line {number} {line.strip()!r} is not 'L B E P' (four integers ≥ 0: label, "
                            "first frame, last frame, parent or 0); fix or remove the line")
        records.append(CtcRecord(*values))
    return tuple(records)


def read_ctc_tracks(folder: str | os.PathLike, validate: bool = True) -> CtcTracks:
    """Read a CTC result (``res_track.txt`` + ``maskTTT.tif``) or ground truth (``man_track.txt`` +
    ``man_trackTTT.tif``; ``folder`` may be the sequence's ground-truth folder with a ``TRA`` sub-folder).

    Raises
    ------
    UserError
        Missing or unreadable files, frames missing from the numbering (0, 1, …), masks of different
        shapes, or (``validate``) tracks that break the CTC rules — naming the file and the first problems.
    """
    place, track_file = _track_folder(Path(folder))
    prefix = "mask" if track_file.name == RESULT_TRACKS else "man_track"
    found = {}
    for p in place.iterdir():
        m = _MASK.match(p.name)
        if m and m.group(1) == prefix:
            found[int(m.group(2))] = p
    if not found:
        raise UserError(f"{place}: no {prefix}TTT.tif mask files beside {track_file.name}; put the masks of every "
                        "frame in this folder")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise UserError(f"{place}: {prefix}{missing[0]:03d}.tif is missing ({len(missing)} frame(s) missing in "
                        f"0..{max(found)}); CTC needs a mask for every frame, empty ones included")
    files = tuple(found[t] for t in range(len(found)))
    frames: list[np.ndarray] = []
    for p in files:
        try:
            frame = tifffile.imread(p)
        except Exception as exc:  # tifffile raises many kinds for broken files
            raise UserError(f"{p}: not a readable TIFF ({type(exc).__name__}: {exc}); rewrite the mask") from None
        if frame.ndim != 2 or not np.issubdtype(frame.dtype, np.integer):
            raise UserError(f"{p}: a CTC mask must be a 2D integer image (uint16), but this is {frame.dtype} "
                            f"{frame.shape}; save the track labels of this frame as a uint16 TIFF")
        if frames and frame.shape != frames[0].shape:
            raise UserError(f"{p}: shape {frame.shape} differs from {files[0].name}'s {frames[0].shape}; all masks "
                            "of a sequence must have one shape")
        frames.append(frame)
    records = read_track_file(track_file)
    labels = np.stack(frames)
    if validate:
        problems = ctc_problems(labels, records)
        if problems:
            raise UserError(f"{track_file}: breaks the CTC rules — " + "; ".join(problems) +
                            " — fix the track file or the masks so that they agree")
    return CtcTracks(labels=labels, records=records, track_file=track_file, mask_files=files)
