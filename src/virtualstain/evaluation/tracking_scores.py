"""Cell Tracking Challenge measures of a tracking result, with py-ctcmetrics (the CTC's own Python package).

- DET, TRA: the acyclic-oriented-graph measures (Matula et al. 2015): 1 − min(AOGM, AOGM₀)/AOGM₀, where AOGM
  weighs the graph edits that turn the result into the reference (TRA: split vertices ×5, false negatives
  ×10, false positives ×1, redundant edges ×1, missing edges ×1.5, wrong edge semantics ×1; DET: the vertex
  terms only; LNK: the edge terms only). A result object detects a reference marker when it covers more than
  half of it.
- SEG: mean Jaccard index of the reference segmentation objects (0 for unmatched ones).
- Link precision, recall and F1 (:func:`virtualstain.analysis.tracking.link_scores`) and the divisions found.

The ground truth is laid out as in ``ctc_sim_nuclei_track``: ``tra/`` (``man_trackTTT.tif`` + ``man_track.txt``)
and ``seg/`` (``man_segTTT.tif``, optional; also ``TRA``/``SEG`` as the CTC ships them). py-ctcmetrics expects
``<seq>_GT/TRA``, ``<seq>_GT/SEG`` and ``<seq>_RES``; the layout is made of links in a temporary folder.
py-ctcmetrics is optional (``pip install "virtualstain[track]"``) and imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import tifffile

from ..analysis.tracking import TRACK_EXTRA_HINT, dividing_tracks, label_codes, link_scores
from ..data.ctc import CtcTracks, read_ctc_tracks
from ..errors import UserError

CTC_MEASURES = ("DET", "SEG", "TRA", "LNK")


@dataclass(frozen=True)
class TrackingScores:
    """CTC measures (0…1, higher is better; None when not computed) and link/division counts of one result."""

    det: float | None
    seg: float | None
    tra: float | None
    lnk: float | None
    link_precision: float
    link_recall: float
    link_f1: float
    n_tracks: int
    n_reference_tracks: int
    n_divisions: int
    n_reference_divisions: int
    aogm: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ctcmetrics() -> Any:
    try:
        import ctc_metrics.scripts.evaluate as evaluate
    except ImportError:
        raise UserError(f"CTC measures need the py-ctcmetrics package, which is not installed; {TRACK_EXTRA_HINT}") from None
    return evaluate


def _sub(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / name.lower()):
        if candidate.is_dir():
            return candidate
    return None


def _link(src: Path, dest: Path) -> None:
    try:
        os.symlink(src.resolve(), dest, target_is_directory=src.is_dir())
    except OSError:  # no symlinks (some Windows setups, some file systems): copy
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)


def _match_2d(ref_path: str | None, comp_path: str | None, original: Callable[..., Any]) -> Any:
    """py-ctcmetrics' ``representations.match`` for 2D masks, the same numbers ~20× faster.

    The library builds the frame's confusion matrix with ``sklearn.metrics.confusion_matrix``, which maps every
    pixel through a Python dict unless the labels happen to be 0…n−1 (~0.35 s per 690×628 frame, 25 s for
    65 frames with SEG and TRA); here the reference × computed block comes from one ``numpy.bincount``. The
    rest (coverage > 0.5 of the reference, IoU) is the library's arithmetic on the same integers. Anything but
    two readable 2D masks goes to the library's own function.
    """
    if ref_path is None or comp_path is None or ref_path == comp_path or not os.path.exists(ref_path):
        return original(ref_path, comp_path)
    ref, comp = tifffile.imread(ref_path), tifffile.imread(comp_path)
    if ref.ndim != 2 or ref.shape != comp.shape:
        return original(ref_path, comp_path)
    if ref.dtype.kind not in "iu" or comp.dtype.kind not in "iu" or not ((ref == 0).any() and (comp == 0).any()):
        return original(ref_path, comp_path)  # the library assumes integer masks with background in both
    labels_ref, ref_code = label_codes(ref.ravel())
    labels_comp, comp_code = label_codes(comp.ravel())
    n_ref, n_comp = len(labels_ref) + 1, len(labels_comp) + 1
    cm = np.bincount(ref_code * n_comp + comp_code, minlength=n_ref * n_comp).reshape(n_ref, n_comp)
    sum_ref, sum_comp = cm.sum(1, keepdims=True), cm.sum(0, keepdims=True)
    over_ref = (cm / np.maximum(sum_ref, 1))[1:, 1:]
    iou = (cm / np.maximum(sum_ref + sum_comp - cm, 1))[1:, 1:]
    rows, cols = np.nonzero(over_ref > 0.5)
    mapped_ref, mapped_comp = labels_ref[rows].tolist(), labels_comp[cols].tolist()
    return labels_ref.tolist(), labels_comp.tolist(), mapped_ref, mapped_comp, iou[rows, cols].tolist()


def _ground_truth(ground_truth: Path) -> tuple[Path, Path | None]:
    tra, seg = _sub(ground_truth, "TRA"), _sub(ground_truth, "SEG")
    if tra is None:
        raise UserError(f"{ground_truth}: no tra/ (or TRA/) folder with man_track.txt and man_trackTTT.tif; give a "
                        "CTC ground-truth folder")
    return tra, seg


def _read_pair(result: Path, tra: Path) -> tuple[CtcTracks, CtcTracks]:
    """The result (checked by the CTC checker's rules, with our messages) and the reference, of one shape."""
    res, ref = read_ctc_tracks(result), read_ctc_tracks(tra, validate=False)
    if res.labels.shape != ref.labels.shape:
        raise UserError(f"{result}: {res.labels.shape[0]} frames of {res.labels.shape[1:]} but the ground truth "
                        f"{tra} has {ref.labels.shape[0]} of {ref.labels.shape[1:]}; track the same sequence")
    return res, ref


def ctc_measures(result: str | os.PathLike, ground_truth: str | os.PathLike,
                 measures: tuple[str, ...] = CTC_MEASURES, fast_match: bool = True) -> dict[str, Any]:
    """py-ctcmetrics' measures of a CTC result folder against a ground-truth folder (see the module docstring).

    ``fast_match`` swaps py-ctcmetrics' per-frame mask matching for :func:`_match_2d` (same numbers, ~20×
    faster on 2D masks) during the call.

    Returns
    -------
    dict
        ``{"DET": …, "SEG": …, "TRA": …, "LNK": …, "AOGM": …, "AOGM_FN": …, …}`` as py-ctcmetrics names them
        (SEG left out when there is no ``seg/`` folder).

    Raises
    ------
    UserError
        Missing folders, different frame counts, or a result that the CTC checker declares invalid.
    """
    tra, seg = _ground_truth(Path(ground_truth))
    res, _ = _read_pair(Path(result), tra)
    return _measure(res, tra, seg, measures, fast_match)


def _measure(res: CtcTracks, tra: Path, seg: Path | None, measures: tuple[str, ...], fast_match: bool) -> dict[str, Any]:
    evaluate = _ctcmetrics()
    wanted = [m for m in measures if m != "SEG" or seg is not None]
    with tempfile.TemporaryDirectory(prefix="vs-ctc-") as tmp:
        res_dir, gt_dir = Path(tmp) / "01_RES", Path(tmp) / "01_GT"
        res_dir.mkdir()
        gt_dir.mkdir()
        for p in (*res.mask_files, res.track_file):  # only the CTC files: other TIFFs there would count as masks
            _link(p, res_dir / p.name)
        _link(tra, gt_dir / "TRA")
        if seg is not None:
            _link(seg, gt_dir / "SEG")
        original = evaluate.match_tracks
        fast = functools.partial(_match_2d, original=original) if fast_match else original
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()), \
                mock.patch.object(evaluate, "match_tracks", fast):
            warnings.simplefilter("always")
            scores = evaluate.evaluate_sequence(str(res_dir), str(gt_dir), metrics=list(wanted), threads=1)
    if not scores.get("Valid", 1) and any(scores.get(m) is None for m in wanted):
        why = "; ".join(str(w.message) for w in caught[:3]) or "see the CTC format rules"
        raise UserError(f"{res.track_file}: the CTC checker declares this result invalid ({why}); fix the result files")
    return {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in scores.items() if v is not None}


def score_tracking(result: str | os.PathLike, ground_truth: str | os.PathLike,
                   measures: tuple[str, ...] = CTC_MEASURES, fast_match: bool = True) -> TrackingScores:
    """CTC measures (:func:`ctc_measures`) plus link precision/recall/F1 (objects matched by IoU > 0.5 with the
    ``tra/`` reference masks, :func:`~virtualstain.analysis.tracking.link_scores`) and division counts."""
    tra, seg = _ground_truth(Path(ground_truth))
    res, ref = _read_pair(Path(result), tra)
    measured = _measure(res, tra, seg, measures, fast_match)
    links = link_scores(res, ref)

    def get(name: str) -> float | None:
        value = measured.get(name)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    return TrackingScores(
        det=get("DET"), seg=get("SEG"), tra=get("TRA"), lnk=get("LNK"), link_precision=links.precision,
        link_recall=links.recall, link_f1=links.f1, n_tracks=len(res.records), n_reference_tracks=len(ref.records),
        n_divisions=len(dividing_tracks(res.records)), n_reference_divisions=len(dividing_tracks(ref.records)),
        aogm={k: float(v) for k, v in measured.items() if k.startswith("AOGM")})
