"""Compare predictions with real stains, image by image and channel (Pearson r, SSIM, PSNR, NRMSE, MAE)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, ensure_writable_dir
from ..data.io import TIFF_SUFFIXES, channels_first_by_axes, read_image
from ..errors import UserError
from ..metrics import mae, nrmse, pearson_r, psnr, ssim

COLUMNS = ["image", "channel", "pearson_r", "ssim", "psnr", "nrmse", "mae", "data_range", "note"]


def score_channel(prediction: np.ndarray, target: np.ndarray) -> dict:
    """Pearson r, SSIM and PSNR (data range = the target's max − min), NRMSE (RMSE / that range), MAE.

    A constant target leaves r, SSIM, PSNR and NRMSE undefined: they are NaN and ``note`` says why.
    """
    span = float(target.max() - target.min())
    row = {"pearson_r": pearson_r(prediction, target), "mae": mae(prediction, target), "data_range": span}
    row.update(ssim=float("nan"), psnr=float("nan"), nrmse=float("nan"), note="")
    if span == 0:
        row["note"] = "not defined: the target is constant"
        return row
    row.update(psnr=psnr(prediction, target, data_range=span), nrmse=nrmse(prediction, target))
    try:
        row["ssim"] = ssim(prediction, target, data_range=span)
    except ValueError as exc:
        row["note"] = f"SSIM not defined: {exc}"
    if not np.isfinite(row["pearson_r"]):
        row["note"] = "not defined: the prediction is constant"
    return row


def _expand(arg: str | os.PathLike) -> list[Path]:
    path = Path(arg)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES + (".png",))
        if not files:
            raise UserError(f"{path}: folder has no .tif/.png images")
        return files
    return [path]


def pair_files(predictions: Sequence[str | os.PathLike], targets: Sequence[str | os.PathLike]) -> list[tuple[Path, list[Path]]]:
    """Pair prediction files with target files.

    Folders are matched by file name; lists of files by position. A target entry may
    join several single-stain files with ``;`` (their channels are stacked).
    """
    if len(predictions) == 1 and len(targets) == 1 and Path(predictions[0]).is_dir() and Path(str(targets[0])).is_dir():
        preds, tdir = _expand(predictions[0]), Path(targets[0])
        pairs = []
        for p in preds:
            t = tdir / p.name
            if not t.exists():
                raise UserError(f"{p}: no target with the same name in {tdir}; name each target like its prediction")
            pairs.append((p, [t]))
        return pairs
    preds = [p for a in predictions for p in _expand(a)]
    tgts = [[Path(x) for x in str(a).split(";") if x] for a in targets]
    if len(preds) != len(tgts):
        raise UserError(f"{len(preds)} prediction file(s) but {len(tgts)} target(s); give one target per prediction, "
                        "in the same order (or two folders with matching file names)")
    return list(zip(preds, tgts))


def _load_stack(paths: list[Path]) -> np.ndarray:
    parts = []
    for p in paths:
        a, meta = read_image(p)
        parts.append(channels_first_by_axes(a, meta.axes))
    shapes = {x.shape[1:] for x in parts}
    if len(shapes) > 1:
        raise UserError(f"target files {[str(p) for p in paths]} differ in shape {sorted(shapes)}; they must match")
    return np.concatenate(parts, 0).astype(np.float64)


def evaluate_files(predictions: Sequence[str | os.PathLike], targets: Sequence[str | os.PathLike],
                   out: str | os.PathLike | None = None) -> list[dict]:
    """Score each prediction against its target; writes ``out/metrics.csv`` when ``out`` is given.

    Returns
    -------
    list of dict
        One row per image and channel with the columns of :data:`COLUMNS` (see :func:`score_channel`).
    """
    rows = []
    for pred_path, tgt_paths in pair_files(predictions, targets):
        pred, meta = read_image(pred_path)
        pred = channels_first_by_axes(pred, meta.axes)
        tgt = _load_stack(tgt_paths)
        if tgt.shape[0] == 1 and pred.shape[0] > 1 and tgt.shape[1:] == pred.shape[1:]:
            raise UserError(f"{pred_path} has {pred.shape[0]} channels but target {tgt_paths[0]} has 1; give one target "
                            "file per channel joined with ';' (e.g. 'dapi.tif;map2.tif')")
        if pred.shape != tgt.shape:
            raise UserError(f"prediction {pred_path} has shape {pred.shape} but target "
                            f"{';'.join(map(str, tgt_paths))} has {tgt.shape}; compare images of the same field and size")
        names = meta.channel_names if len(meta.channel_names) == pred.shape[0] else [str(c) for c in range(pred.shape[0])]
        for c, name in enumerate(names):
            rows.append({"image": pred_path.name, "channel": name, **score_channel(pred[c], tgt[c])})
    if out is not None:
        folder = ensure_writable_dir(out)
        with atomic_path(folder / "metrics.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
    return rows
