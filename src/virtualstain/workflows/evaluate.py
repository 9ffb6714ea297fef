"""Judge predictions against real stains: pixel metrics, object readouts, a baseline, verdicts and a report.

For every image and channel: Pearson r, segmentation-PCC, SSIM, PSNR, NRMSE, MAE (see
:mod:`virtualstain.metrics`); for nuclei and junction channels the object readouts of
:mod:`virtualstain.analysis.readouts` (counts, F1@0.5, centroid displacement, area ratio); with the
label-free inputs given, the same pixel metrics for "input vs target" (the input channel that correlates
best, rescaled by least squares) as the baseline a model must beat. Per channel, the summary pools them
(FRM's accuracy score P included) and :mod:`virtualstain.report.verdicts` words them.

Everything is computed and checked before anything is written, so bad input never leaves a half-written
``metrics.csv`` / ``summary.json`` / ``report.html``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import ensure_writable_dir, write_csv_atomic, write_text_atomic
from ..analysis.features import FEATURES, feature_correlations
from ..analysis.readouts import READOUTS, ObjectReadout, object_readout, readout_for
from ..data.io import TIFF_SUFFIXES, channels_first_by_axes, read_image
from ..errors import UserError
from ..metrics import has_signal, mae, nrmse, pearson_r, psnr, segmentation_pcc, signal_threshold, ssim
from ..report.html import render_report
from ..report.verdicts import verdicts

COLUMNS = ["image", "channel", "pearson_r", "segmentation_pcc", "ssim", "psnr", "nrmse", "mae", "data_range",
           "baseline_pearson_r", "baseline_ssim", "baseline_nrmse", "readout", "count_target", "count_prediction",
           "count_error", "precision", "recall", "f1", "displacement_median_um", "area_ratio_median", "note"]
_SMALL = 4  # keep every 4th pixel per axis of each target for the pooled signal threshold of P


def score_channel(prediction: np.ndarray, target: np.ndarray) -> dict:
    """Pearson r, segmentation-PCC, SSIM and PSNR (data range = the target's max − min), NRMSE (RMSE / range), MAE.

    A constant target leaves r, SSIM, PSNR and NRMSE undefined: they are NaN and ``note`` says why.
    """
    span = float(target.max() - target.min())
    row = {"pearson_r": pearson_r(prediction, target), "mae": mae(prediction, target), "data_range": span}
    row.update(segmentation_pcc=float("nan"), ssim=float("nan"), psnr=float("nan"), nrmse=float("nan"), note="")
    if span == 0:
        row["note"] = "not defined: the target is constant"
        return row
    row.update(psnr=psnr(prediction, target, data_range=span), nrmse=nrmse(prediction, target),
               segmentation_pcc=segmentation_pcc(prediction, target))
    try:
        row["ssim"] = ssim(prediction, target, data_range=span)
    except ValueError as exc:
        row["note"] = f"SSIM not defined: {exc}"
    if not np.isfinite(row["pearson_r"]):
        row["note"] = "not defined: the prediction is constant"
    return row


def baseline_channel(inputs: np.ndarray | None, target: np.ndarray) -> dict:
    """Input-vs-target baseline: the input channel with the largest |r|, rescaled to the target by least squares.

    Returns ``baseline_pearson_r`` (= |r| of that channel), ``baseline_ssim`` and ``baseline_nrmse`` of the
    rescaled input; NaN where undefined (no inputs, constant target or input).
    """
    t = target.astype(np.float64)
    best, best_k = float("nan"), -1
    for k, x in enumerate(inputs if inputs is not None else []):
        r = abs(pearson_r(x, t))
        if np.isfinite(r) and not r <= best:
            best, best_k = r, k
    out = {"baseline_pearson_r": best, "baseline_ssim": float("nan"), "baseline_nrmse": float("nan")}
    span = float(t.max() - t.min())
    if best_k < 0 or span == 0:
        return out
    x = inputs[best_k].astype(np.float64).ravel()
    slope, offset = np.polyfit(x, t.ravel(), 1)
    fitted = (slope * x + offset).reshape(t.shape)
    out["baseline_nrmse"] = nrmse(fitted, t)
    try:
        out["baseline_ssim"] = ssim(fitted, t, data_range=span)
    except ValueError:
        pass
    return out


@dataclass
class Panel:
    """The arrays of one image and channel kept for the report's picture panels."""

    image: str
    channel: str
    prediction: np.ndarray
    target: np.ndarray
    input: np.ndarray | None
    ssim_map: np.ndarray | None
    readout: ObjectReadout | None


@dataclass
class ChannelPool:
    """What the summary and the plots need from every image of one channel."""

    kind: str = "none"
    small_targets: list[np.ndarray] = field(default_factory=list)
    pairs: list[np.ndarray] = field(default_factory=list)  # (2, n) subsampled (target, prediction) pixels
    displacement_um: list[np.ndarray] = field(default_factory=list)
    area_target_um2: list[np.ndarray] = field(default_factory=list)
    area_prediction_um2: list[np.ndarray] = field(default_factory=list)
    features_real: list[dict[str, np.ndarray]] = field(default_factory=list)
    features_virtual: list[dict[str, np.ndarray]] = field(default_factory=list)


@dataclass
class Evaluation:
    """Result of :func:`evaluate_files`.

    Attributes
    ----------
    rows : list of dict
        One row per image and channel with the columns of :data:`COLUMNS`.
    summary : dict
        Per channel: pooled metrics, readouts and plain-language ``verdicts``; as written to ``summary.json``.
    out : Path or None
        Folder with ``metrics.csv``, ``summary.json`` and ``report.html`` when one was given.
    """

    rows: list[dict]
    summary: dict
    out: Path | None = None
    panels: list[Panel] = field(default_factory=list, repr=False)
    pools: dict[str, ChannelPool] = field(default_factory=dict, repr=False)


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


def _subsample(prediction: np.ndarray, target: np.ndarray, n: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).choice(target.size, size=min(n, target.size), replace=False)
    return np.stack([target.ravel()[idx], prediction.ravel()[idx]])


def _readout_kinds(names: list[str], readouts: Mapping[str, str] | None) -> dict[str, str]:
    kinds = {n: readout_for(n) for n in names}
    for name, kind in (readouts or {}).items():
        if kind not in READOUTS:
            raise UserError(f"readout for channel {name!r} must be one of {', '.join(READOUTS)}, got {kind!r}")
        if name not in kinds:
            raise UserError(f"readout given for channel {name!r} but the predictions' channels are "
                            f"{', '.join(names)}; use one of those names")
        kinds[name] = kind
    return kinds


def _channel_names(meta_names: list[str], n: int) -> list[str]:
    return list(meta_names) if len(meta_names) == n else [str(c) for c in range(n)]


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _summarise(rows: list[dict], pools: dict[str, ChannelPool], pixel_size_um: float | None) -> dict:
    channels = {}
    for name, pool in pools.items():
        mine = [r for r in rows if r["channel"] == name]
        level = signal_threshold(pool.small_targets) if pool.small_targets else float("nan")
        used = [r["pearson_r"] for r, t in zip(mine, pool.small_targets)
                if has_signal(t, level) and np.isfinite(r["pearson_r"])]
        entry = {
            "n_images": len(mine), "readout": pool.kind,
            "pearson_r_mean": _nanmean([r["pearson_r"] for r in mine]),
            "pearson_r_median": float(np.nanmedian([r["pearson_r"] for r in mine]))
            if any(np.isfinite(r["pearson_r"]) for r in mine) else float("nan"),
            "accuracy_score_p": float(np.mean(used)) if used else float("nan"), "p_images_with_signal": len(used),
            "segmentation_pcc_mean": _nanmean([r["segmentation_pcc"] for r in mine]),
            "ssim_mean": _nanmean([r["ssim"] for r in mine]), "psnr_mean": _nanmean([r["psnr"] for r in mine]),
            "nrmse_mean": _nanmean([r["nrmse"] for r in mine]), "mae_mean": _nanmean([r["mae"] for r in mine]),
            "baseline_pearson_r_mean": _nanmean([r["baseline_pearson_r"] for r in mine]),
            "baseline_ssim_mean": _nanmean([r["baseline_ssim"] for r in mine]),
            "undefined": [f"{r['image']}: {r['note']}" for r in mine if r["note"]],
        }
        if pool.kind != "none":
            n_t = sum(r["count_target"] for r in mine)
            n_p = sum(r["count_prediction"] for r in mine)
            disp = np.concatenate(pool.displacement_um) if pool.displacement_um else np.zeros(0)
            at = np.concatenate(pool.area_target_um2) if pool.area_target_um2 else np.zeros(0)
            ap = np.concatenate(pool.area_prediction_um2) if pool.area_prediction_um2 else np.zeros(0)
            entry.update({
                "count_target_total": int(n_t), "count_prediction_total": int(n_p),
                "count_error_total": (n_p - n_t) / n_t if n_t else float("nan"),
                "count_error_abs_mean": _nanmean([abs(r["count_error"]) for r in mine]),
                "f1_mean": _nanmean([r["f1"] for r in mine]), "matched": int(disp.size),
                "displacement_median_um": float(np.median(disp)) if disp.size else float("nan"),
                "displacement_p90_um": float(np.percentile(disp, 90)) if disp.size else float("nan"),
                "area_target_median_um2": float(np.median(at)) if at.size else float("nan"),
                "area_prediction_median_um2": float(np.median(ap)) if ap.size else float("nan"),
                "area_ratio_median": _nanmean([r["area_ratio_median"] for r in mine]),
                "feature_pearson_r": feature_correlations(
                    {k: np.concatenate([t[k] for t in pool.features_real]) for k in FEATURES},
                    {k: np.concatenate([t[k] for t in pool.features_virtual]) for k in FEATURES}),
            })
        channels[name] = entry
    return {"pixel_size_um": pixel_size_um, "length_unit": "µm" if pixel_size_um else "px",
            "n_images": len({r["image"] for r in rows}), "channels": channels}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def evaluate_files(predictions: Sequence[str | os.PathLike], targets: Sequence[str | os.PathLike],
                   out: str | os.PathLike | None = None, *, inputs: Sequence[str | os.PathLike] | None = None,
                   pixel_size_um: float | None = None, readouts: Mapping[str, str] | None = None,
                   report: bool = True, max_panels: int = 4, title: str = "virtualstain evaluation") -> Evaluation:
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

    Returns
    -------
    Evaluation
    """
    pairs = pair_files(predictions, targets)
    input_of = {p: i[0] for p, i in pair_files(predictions, inputs, "input")} if inputs is not None else {}
    rows: list[dict] = []
    panels: list[Panel] = []
    pools: dict[str, ChannelPool] = {}
    units_px = None
    for k, (pred_path, tgt_paths) in enumerate(pairs):
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
        px = pixel_size_um or meta.pixel_size_um or tgt_px
        units_px = px if units_px is None else units_px
        names = _channel_names(meta.channel_names, pred.shape[0])
        kinds = _readout_kinds(names, readouts)
        for c, name in enumerate(names):
            row = {"image": pred_path.name, "channel": name, **score_channel(pred[c], tgt[c])}
            row.update(baseline_channel(x, tgt[c]))
            pool = pools.setdefault(name, ChannelPool(kind=kinds[name]))
            pool.small_targets.append(tgt[c][..., ::_SMALL, ::_SMALL].astype(np.float32))
            pool.pairs.append(_subsample(pred[c], tgt[c], 20000, k))
            readout = None
            row["readout"] = kinds[name]
            if kinds[name] != "none":
                readout = object_readout(pred[c], tgt[c], kinds[name], pixel_size_um=px or 1.0)
                row.update(readout.row())
                m = readout.match
                pool.displacement_um.append(m.displacement_um)
                pool.area_target_um2.append(m.area_true_um2)
                pool.area_prediction_um2.append(m.area_predicted_um2)
                pool.features_real.append(readout.features.real)
                pool.features_virtual.append(readout.features.virtual)
                if m.n_true == 0:
                    row["note"] = (row["note"] + "; " if row["note"] else "") + \
                        f"count error not defined: no {kinds[name]} found in the target"
            rows.append(row)
            if k < max_panels:  # the first images get picture panels
                smap = None
                if np.isfinite(row["ssim"]):
                    smap = ssim(pred[c], tgt[c], data_range=row["data_range"], full=True)[1]
                panels.append(Panel(pred_path.name, name, pred[c], tgt[c], x, smap, readout))
    summary = _summarise(rows, pools, units_px)
    for name, entry in summary["channels"].items():
        entry["verdicts"] = verdicts(name, entry, summary["length_unit"])
    evaluation = Evaluation(rows, summary, None, panels, pools)
    if out is not None:
        evaluation.out = write_evaluation(evaluation, out, report=report, title=title)
    return evaluation


def write_evaluation(evaluation: Evaluation, out: str | os.PathLike, *, report: bool = True,
                     title: str = "virtualstain evaluation") -> Path:
    """Write ``metrics.csv``, ``summary.json`` and (with ``report``) ``report.html`` into ``out``, atomically."""
    folder = ensure_writable_dir(out)
    extra = [k for k in dict.fromkeys(k for r in evaluation.rows for k in r) if k not in COLUMNS]
    write_csv_atomic(folder / "metrics.csv", evaluation.rows, COLUMNS + extra)
    write_text_atomic(folder / "summary.json", json.dumps(_json_safe(evaluation.summary), indent=2, ensure_ascii=False))
    if report:
        write_text_atomic(folder / "report.html", render_report(evaluation, title))
    return folder
