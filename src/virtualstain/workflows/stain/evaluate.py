"""``virtualstain evaluate``: judge prediction files against real stains and write the report.

Files are paired (:func:`pair_files`), read and checked, then scored by
:class:`~virtualstain.evaluation.scoring.Evaluator`. Everything is computed and checked before
anything is written, so bad input never leaves a half-written ``metrics.csv`` / ``summary.json`` /
``report.html``, and none of them may be one of the files read (checked first, also through links).
The files' columns and keys are those of :mod:`virtualstain.evaluation.types`
(lengths ``_um`` with a pixel size, ``_px`` without).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, refuse_overwriting_inputs, write_csv_atomic, write_text_atomic
from ...data.io import TIFF_SUFFIXES, channels_first_by_axes, read_image
from ...errors import UserError
from ...evaluation.scoring import Evaluator
from ...evaluation.types import Evaluation
from ...report.html import render_report
from .nuclei_segmenter import JUDGE_NUCLEI_METHOD, judge_segmenter, second_opinion


def _expand(arg: str | os.PathLike) -> list[Path]:
    path = Path(arg)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES + (".png",))
        if not files:
            raise UserError(f"{path}: folder has no .tif/.png images")
        return files
    return [path]


def pair_files(predictions: Sequence[str | os.PathLike], targets: Sequence[str | os.PathLike],
               what: str = "target") -> list[tuple[Path, list[Path]]]:
    """Pair prediction files with target (or input) files.

    A target folder is matched by file name (predictions may be files or a folder); lists of files by
    position. A target entry may join several single-stain files with ``;`` (their channels are stacked).
    """
    preds = [p for a in predictions for p in _expand(a)]
    if len(targets) == 1 and Path(str(targets[0])).is_dir():
        tdir = Path(targets[0])
        pairs = []
        for p in preds:
            t = tdir / p.name
            if not t.exists():
                raise UserError(f"{p}: no {what} with the same name in {tdir}; name each {what} like its prediction")
            pairs.append((p, [t]))
        return pairs
    tgts = [[Path(x) for x in str(a).split(";") if x] for a in targets]
    if len(preds) != len(tgts):
        raise UserError(f"{len(preds)} prediction file(s) but {len(tgts)} {what}(s); give one {what} per prediction, "
                        "in the same order (or a folder with matching file names)")
    return list(zip(preds, tgts))


def _load_stack(paths: list[Path]) -> tuple[np.ndarray, float | None]:
    parts, pixel_sizes = [], []
    for p in paths:
        a, meta = read_image(p)
        parts.append(channels_first_by_axes(a, meta.axes))
        pixel_sizes.append(meta.pixel_size_um)
    shapes = {x.shape[1:] for x in parts}
    if len(shapes) > 1:
        raise UserError(f"files {[str(p) for p in paths]} differ in shape {sorted(shapes)}; they must match")
    return np.concatenate(parts, 0).astype(np.float64), next((s for s in pixel_sizes if s), None)


def evaluate_files(predictions: Sequence[str | os.PathLike], targets: Sequence[str | os.PathLike],
                   out: str | os.PathLike | None = None, *, inputs: Sequence[str | os.PathLike] | None = None,
                   pixel_size_um: float | None = None, readouts: Mapping[str, str] | None = None,
                   report: bool = True, max_panels: int = 4, title: str = "virtualstain evaluation",
                   nuclei_method: str | None = None) -> Evaluation:
    """Score each prediction against its target and, with ``out``, write the metrics, summary and report.

    Parameters
    ----------
    predictions, targets : sequence of path
        Files paired by position, or one folder each paired by file name; a target entry may join
        single-stain files with ``;``.
    out : path, optional
        Folder for ``metrics.csv``, ``summary.json`` and (with ``report``) ``report.html``.
    inputs : sequence of path, optional
        The label-free inputs, paired like the targets, for the input-vs-target baseline and the panels.
    pixel_size_um : float, optional
        µm per pixel; default from the prediction file, else the target, else lengths stay in pixels.
    readouts : mapping of channel name to {"nuclei", "cells", "none"}, optional
        Object readout per channel; channels not named are decided by name (:func:`readout_for`).
    max_panels : int
        Image panels shown in the report (the first images, in order).
    nuclei_method : {"classical", "learned", "cellpose"}, optional
        How nuclei channels are segmented (default
        :data:`~virtualstain.workflows.stain.nuclei_segmenter.JUDGE_NUCLEI_METHOD`, classical; cellpose only
        where it is installed). The real stain of each nuclei channel is also segmented by a second method, to
        show where the two disagree: the learned segmenter when the classical one judges (torch is loaded
        then, ≈ 1 s per 512² image), else the classical method.

    Returns
    -------
    Evaluation
    """
    pairs = pair_files(predictions, targets)
    input_of = {p: i[0] for p, i in pair_files(predictions, inputs, "input")} if inputs is not None else {}
    if out is not None:
        read = [p for p, tgts in pairs for p in (p, *tgts)] + list(input_of.values())
        refuse_overwriting_inputs(_written_files(Path(out), report), read)
    method = nuclei_method or JUDGE_NUCLEI_METHOD
    evaluator = Evaluator(readouts, max_panels, nuclei_segmenter=judge_segmenter(method), nuclei_method=method,
                          second_opinion=second_opinion(method))
    for pred_path, tgt_paths in pairs:
        pred, meta = read_image(pred_path)
        pred = channels_first_by_axes(pred, meta.axes).astype(np.float64)
        tgt, tgt_px = _load_stack(tgt_paths)
        tgt_names = ";".join(map(str, tgt_paths))
        if tgt.shape[0] == 1 and pred.shape[0] > 1 and tgt.shape[1:] == pred.shape[1:]:
            raise UserError(f"{pred_path} has {pred.shape[0]} channels but target {tgt_paths[0]} has 1; give one target "
                            "file per channel joined with ';' (e.g. 'dapi.tif;map2.tif')")
        if pred.shape != tgt.shape:
            raise UserError(f"prediction {pred_path} has shape {pred.shape} but target {tgt_names} has {tgt.shape}; "
                            "compare images of the same field and size")
        for path, array in ((pred_path, pred), (tgt_names, tgt)):
            if not np.all(np.isfinite(array)):
                raise UserError(f"{path} contains NaN or infinite pixels; fix or mask them before evaluating")
        x = None
        if pred_path in input_of:
            x, _ = _load_stack([input_of[pred_path]])
            if x.shape[1:] != pred.shape[1:]:
                raise UserError(f"input {input_of[pred_path]} has spatial shape {x.shape[1:]} but prediction {pred_path} "
                                f"has {pred.shape[1:]}; give the input the prediction was made from")
        evaluator.add(pred_path.name, pred, tgt, meta.channel_names, inputs=x,
                      pixel_size_um=pixel_size_um or meta.pixel_size_um or tgt_px)
    evaluation = evaluator.finish()
    if out is not None:
        evaluation.out = write_evaluation(evaluation, out, report=report, title=title)
    return evaluation


def _written_files(folder: Path, report: bool) -> list[Path]:
    return [folder / "metrics.csv", folder / "summary.json"] + ([folder / "report.html"] if report else [])


def write_evaluation(evaluation: Evaluation, out: str | os.PathLike, *, report: bool = True,
                     title: str = "virtualstain evaluation") -> Path:
    """Write ``metrics.csv``, ``summary.json`` and (with ``report``) ``report.html`` into ``out``, atomically."""
    folder = ensure_writable_dir(out)
    write_csv_atomic(folder / "metrics.csv", evaluation.csv_rows(), evaluation.csv_columns())
    write_text_atomic(folder / "summary.json", json.dumps(evaluation.summary_dict(), indent=2, ensure_ascii=False))
    if report:
        write_text_atomic(folder / "report.html", render_report(evaluation, title))
    return folder
