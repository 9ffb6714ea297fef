"""``virtualstain track``: link nucleus labels of a time-lapse into tracks, written in the CTC format.

No torch here: reading label TIFFs, :func:`virtualstain.analysis.tracking.track_labels` (laptrack) and
:func:`virtualstain.data.ctc.write_ctc_result`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, refuse_overwriting_inputs
from ...analysis.tracking import Tracks, track_labels
from ...data.ctc import RESULT_TRACKS, mask_name, write_ctc_result
from ...data.io import read_image
from ...errors import UserError


@dataclass(frozen=True)
class TrackSummary:
    """What ``track`` wrote: the CTC folder, its files, and the counts (frames, tracks, divisions)."""

    out: Path
    files: tuple[Path, ...]
    n_frames: int
    n_tracks: int
    n_divisions: int
    max_distance_px: float

    def line(self) -> str:
        """One-line summary for the command line."""
        def n(count: int, what: str) -> str:
            return f"{count} {what}{'' if count == 1 else 's'}"

        return (f"{n(self.n_frames, 'frame')}, {n(self.n_tracks, 'track')}, {n(self.n_divisions, 'division')} "
                f"(max distance {self.max_distance_px:.1f} px) → {self.out}/{RESULT_TRACKS}")


def read_label_frames(paths: Sequence[str | os.PathLike]) -> list[np.ndarray]:
    """Label frames ``(Y, X)`` from label TIFFs in the given order, or from one ``(T, Y, X)`` stack.

    Raises
    ------
    UserError
        A missing or unreadable file, non-integer or negative labels, a stack among several files, or frames of
        different shapes — naming the file and the fix.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("track needs label images: give one TIFF per frame in time order, or one (T, Y, X) stack")
    frames: list[np.ndarray] = []
    for path in paths:
        array, meta = read_image(path)
        if not np.issubdtype(array.dtype, np.integer):
            raise UserError(f"{path}: labels must be integers (0 = background, 1, 2, … one per nucleus) but the pixels "
                            f"are {array.dtype.name}; give instance-label TIFFs such as `virtualstain segment` writes")
        if array.size and array.min() < 0:
            raise UserError(f"{path}: negative labels; use 0 for background and 1, 2, … for the nuclei")
        squeezed = array
        while squeezed.ndim > 2 and squeezed.shape[0] == 1:  # (1, Y, X), (1, 1, Y, X): one frame
            squeezed = squeezed[0]
        if squeezed.ndim == 3 and len(paths) == 1:
            frames.extend(squeezed)
            continue
        if squeezed.ndim != 2:
            raise UserError(f"{path}: a label frame must be 2D (Y, X), but this file is {array.shape} (axes "
                            f"{meta.axes}); give one 2D label TIFF per frame, or a single (T, Y, X) stack alone")
        if frames and squeezed.shape != frames[0].shape:
            raise UserError(f"{path}: frame shape {squeezed.shape} differs from {paths[0]}'s {frames[0].shape}; all "
                            "frames of a time-lapse must have one shape (crop or pad them alike)")
        frames.append(squeezed)
    return frames


def _check_out(out: Path, inputs: Sequence[Path], n_frames: int) -> None:
    """Refuse an output folder that is the folder of an input (masks would mix with the labels) or that would
    write over an input, before any work."""
    for path in inputs:
        if _same_dir(out, path.parent):
            raise UserError(f"{out}: --out is the folder of the input {path}; the CTC masks would mix with the input "
                            "labels — choose another --out folder")
    dests = [out / mask_name(t, n_frames) for t in range(n_frames)] + [out / RESULT_TRACKS]
    refuse_overwriting_inputs(dests, inputs)


def _same_dir(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_options(max_distance_px: float | None, gap_frames: int) -> None:
    if max_distance_px is not None and not (math.isfinite(max_distance_px) and max_distance_px > 0):
        raise UserError(f"--max-distance-px {max_distance_px}: give a finite number > 0 (pixels), or leave it out "
                        "for one median nucleus diameter")
    if gap_frames < 0:
        raise UserError(f"--gap-frames {gap_frames}: give an integer ≥ 0 (0 = no gap closing)")


def track_frames(frames: Sequence[np.ndarray], out: str | os.PathLike, *, max_distance_px: float | None = None,
                 gap_frames: int = 2, divisions: bool = True) -> tuple[Tracks, TrackSummary]:
    """Track label frames ``(Y, X)`` and write the CTC result (``maskTTT.tif``, ``res_track.txt``) into ``out``."""
    _check_options(max_distance_px, gap_frames)
    tracks = track_labels(frames, max_distance_px=max_distance_px, gap_frames=gap_frames, divisions=divisions)
    if tracks.n_tracks > np.iinfo(np.uint16).max:
        raise UserError(f"{out}: {tracks.n_tracks} tracks do not fit the CTC format's 16-bit labels; track a "
                        "shorter sequence or a smaller field")
    files = write_ctc_result(tracks, out)
    summary = TrackSummary(out=Path(out), files=tuple(files), n_frames=tracks.n_frames, n_tracks=tracks.n_tracks,
                           n_divisions=len(tracks.divisions), max_distance_px=tracks.max_distance_px)
    return tracks, summary


def track_files(labels: Sequence[str | os.PathLike], out: str | os.PathLike, *, max_distance_px: float | None = None,
                gap_frames: int = 2, divisions: bool = True) -> TrackSummary:
    """Track the nuclei of label TIFFs (frame order as given, or one ``(T, Y, X)`` stack) into a CTC folder.

    Parameters
    ----------
    labels : sequence of path-like
        Instance-label TIFFs (0 = background), one per frame in time order, or one stack.
    out : path-like
        Result folder (CTC ``RES``): ``maskTTT.tif`` + ``res_track.txt``; not the folder of an input.
    max_distance_px, gap_frames, divisions
        As :func:`virtualstain.analysis.tracking.track_labels` (distances in pixels).

    Raises
    ------
    UserError
        Bad input files or options, an output folder that is an input's, or laptrack not installed.
    """
    _check_options(max_distance_px, gap_frames)
    paths = [Path(p) for p in labels]
    for path in paths:  # a missing frame is named before any reading
        if not path.exists():
            raise UserError(f"{path}: file not found; check the path (give the label TIFFs of every frame, in time "
                            "order)")
    frames = read_label_frames(paths)
    out_dir = Path(out)
    _check_out(out_dir, paths, len(frames))
    ensure_writable_dir(out_dir)
    return track_frames(frames, out_dir, max_distance_px=max_distance_px, gap_frames=gap_frames,
                        divisions=divisions)[1]
