"""Judge predictions against real stains, on arrays: pixel metrics, object readouts, a baseline, verdicts.

For every image and channel: Pearson r, segmentation-PCC, SSIM, PSNR, NRMSE, MAE (see
:mod:`virtualstain.metrics`); for nuclei and junction channels the object readouts of
:mod:`virtualstain.analysis.readouts` (counts, F1@0.5, centroid displacement, area ratio); with the
label-free inputs given, the same pixel metrics for "input vs target" (the input channel that correlates
best, rescaled by least squares) as the baseline a model must beat. Per channel, the summary pools them
(FRM's accuracy score P included) and :mod:`virtualstain.report.verdicts` words them.

:class:`Evaluator` takes one image at a time (the arrays a workflow holds, or files read by
:mod:`virtualstain.workflows.stain.evaluate`) and returns an :class:`Evaluation`. No torch, no files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis.features import FEATURES, feature_correlations
from ..analysis.readouts import READOUTS, ObjectReadout, object_readout, readout_for
from ..errors import UserError
from ..metrics import has_signal, mae, nrmse, pearson_r, psnr, segmentation_pcc, signal_threshold, ssim
from .verdicts import verdicts

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
        Folder with ``metrics.csv``, ``summary.json`` and ``report.html`` once written.
    """

    rows: list[dict]
    summary: dict
    out: Path | None = None
    panels: list[Panel] = field(default_factory=list, repr=False)
    pools: dict[str, ChannelPool] = field(default_factory=dict, repr=False)


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


class Evaluator:
    """Score images one at a time, then pool them into an :class:`Evaluation`.

    Parameters
    ----------
    readouts : mapping of channel name to {"nuclei", "cells", "none"}, optional
        Object readout per channel; channels not named are decided by name (:func:`readout_for`).
    max_panels : int
        Images (the first ones) whose arrays are kept for the report's picture panels.
    """

    def __init__(self, readouts: Mapping[str, str] | None = None, max_panels: int = 4):
        self.readouts = readouts
        self.max_panels = max_panels
        self.rows: list[dict] = []
        self.panels: list[Panel] = []
        self.pools: dict[str, ChannelPool] = {}
        self.pixel_size_um: float | None = None
        self.n_images = 0

    def add(self, image: str, prediction: np.ndarray, target: np.ndarray, channel_names: list[str], *,
            inputs: np.ndarray | None = None, pixel_size_um: float | None = None, **columns) -> list[dict]:
        """Score one image: ``(C, ...)`` prediction and target of the same shape, optional ``(C_in, ...)`` inputs.

        ``pixel_size_um`` (µm per pixel; lengths stay in pixels without it) of the first image sets the
        evaluation's unit. ``columns`` are extra values for this image's rows (e.g. ``region``).
        Returns the image's rows (one per channel).
        """
        pred, tgt = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
        x = None if inputs is None else np.asarray(inputs, np.float64)
        k = self.n_images
        self.n_images += 1
        if self.pixel_size_um is None:
            self.pixel_size_um = pixel_size_um
        names = _channel_names(channel_names, pred.shape[0])
        kinds = _readout_kinds(names, self.readouts)
        added = []
        for c, name in enumerate(names):
            row = {"image": image, "channel": name, **score_channel(pred[c], tgt[c])}
            row.update(baseline_channel(x, tgt[c]))
            pool = self.pools.setdefault(name, ChannelPool(kind=kinds[name]))
            pool.small_targets.append(tgt[c][..., ::_SMALL, ::_SMALL].astype(np.float32))
            pool.pairs.append(_subsample(pred[c], tgt[c], 20000, k))
            readout = None
            row["readout"] = kinds[name]
            if kinds[name] != "none":
                readout = object_readout(pred[c], tgt[c], kinds[name], pixel_size_um=pixel_size_um or 1.0)
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
            row.update(columns)
            added.append(row)
            if k < self.max_panels:  # the first images get picture panels
                smap = None
                if np.isfinite(row["ssim"]):
                    smap = ssim(pred[c], tgt[c], data_range=row["data_range"], full=True)[1]
                self.panels.append(Panel(image, name, pred[c], tgt[c], x, smap, readout))
        self.rows += added
        return added

    def finish(self) -> Evaluation:
        """Pool every image per channel and word the verdicts."""
        summary = _summarise(self.rows, self.pools, self.pixel_size_um)
        for name, entry in summary["channels"].items():
            entry["verdicts"] = verdicts(name, entry, summary["length_unit"])
        return Evaluation(self.rows, summary, None, self.panels, self.pools)
