"""Figures of an evaluation as PNG bytes (matplotlib, Agg backend; nothing is shown on screen).

Every figure draws from what an :class:`~virtualstain.evaluation.types.Evaluation` keeps: its rows, the
picture panels of the first images, and per channel the pooled pixel pairs, object areas and displacements
and VirFluoNet's tolerance curves; and where the judge's two nuclei segmenters disagree on a real stain.
Volumes are shown as maximum projections along Z.
"""

from __future__ import annotations

import io
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from ..analysis.readouts import SegmenterComparison  # noqa: E402
from ..evaluation.types import (  # noqa: E402
    ChannelPool,
    Disagreement,
    ImageRow,
    NucleiRulers,
    Panel,
    SigmaPanel,
    ToleranceCurve,
)
from ..metrics import joint_histogram  # noqa: E402
from ..metrics.tolerance import ERROR_TOLERANCE, ToleranceIndex, error_mask  # noqa: E402
from ..metrics.uncertainty import ChannelCalibration  # noqa: E402

_DPI = 80
TARGET_COLOUR, PREDICTION_COLOUR = "#2ca02c", "#c2185b"
#: The judging and the other nuclei segmenter in the disagreement panels (RGB 0…1): orange and cyan.
JUDGE_RGB, OTHER_RGB = (1.0, 0.55, 0.0), (0.0, 0.75, 1.0)
#: How strongly an unmatched object is filled with its segmenter's colour.
_FILL = 0.55


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plane(image: np.ndarray) -> np.ndarray:
    return image.max(axis=0) if image.ndim == 3 else image


def _stretch(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((image - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(image)


def panel_figure(panel: Panel, unit: str) -> bytes:
    """One row: input, target, prediction (same intensity scale, object outlines in yellow), overlay, SSIM, |error|,
    and VirFluoNet's thresholded error map (|error| > 50/255 of the target's range, green on the target)."""
    target, prediction = _plane(panel.target), _plane(panel.prediction)
    lo, hi = np.percentile(target, [0.5, 99.5])
    t, p = _stretch(target, lo, hi), _stretch(prediction, lo, hi)
    tiles: list[tuple[str, np.ndarray, dict]] = []
    if panel.input is not None:
        x = _plane(panel.input[panel.input.shape[0] // 2])
        tiles.append(("input", _stretch(x, *np.percentile(x, [0.5, 99.5])), {"cmap": "gray"}))
    outlined = []
    for img, labels in ((t, panel.readout.target_labels if panel.readout else None),
                        (p, panel.readout.prediction_labels if panel.readout else None)):
        rgb = np.repeat(img[..., None], 3, -1)
        if labels is not None:
            rgb[find_boundaries(labels)] = (1.0, 0.85, 0.0)
        outlined.append(rgb)
    overlay = np.stack([p, t, p], -1)  # target green, prediction magenta, agreement white
    error = np.abs(prediction - target)
    tiles += [("target", outlined[0], {}), ("prediction", outlined[1], {}),
              ("overlay", overlay, {})]
    if panel.ssim_map is not None:
        tiles.append(("SSIM map", _plane(panel.ssim_map), {"cmap": "viridis", "vmin": 0, "vmax": 1}))
    tiles.append(("|prediction − target|", error, {"cmap": "magma", "vmin": 0, "vmax": max(hi - lo, 1e-12)}))
    tiles.append(_error_map_tile(panel, t))
    aspect = target.shape[0] / target.shape[1]  # tall strips get tall tiles, not thumbnails
    tile_h = min(2.6 * max(aspect, 1.0), 6.0)
    tile_w = min(tile_h / aspect, 2.6 * 1.5)
    fig, axes = plt.subplots(1, len(tiles), figsize=(tile_w * len(tiles) * 1.15, tile_h + 0.5))
    for ax, (title, img, kw) in zip(np.atleast_1d(axes), tiles):
        im = ax.imshow(img, interpolation="nearest", **kw)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        if "cmap" in kw and title != "input":
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    fig.suptitle(f"{panel.image} — {panel.channel}   (overlay: real green, virtual magenta, both white; "
                 "object outlines yellow)", fontsize=8)
    return _png(fig)


def _error_map_tile(panel: Panel, target_shown: np.ndarray) -> tuple[str, np.ndarray, dict]:
    """The target in grey with the pixels whose |error| exceeds 50/255 of its range in green (VirFluoNet Fig. 5)."""
    span = float(panel.target.max() - panel.target.min())
    mask = error_mask(panel.prediction, panel.target, span) if span > 0 else np.zeros(panel.target.shape, bool)
    rgb = np.repeat(0.6 * target_shown[..., None], 3, -1)
    rgb[_plane(mask)] = (0.0, 0.9, 0.2)  # a volume: error anywhere along Z
    return f"|error| > 50/255 of range ({mask.mean() * 100:.1f} %)", rgb, {}


def disagreement_rgb(target: np.ndarray, comparison: SegmenterComparison) -> np.ndarray:
    """The real stain in grey with both segmentations overlaid: every object outlined in its segmenter's colour
    (judge :data:`JUDGE_RGB`, other :data:`OTHER_RGB`), and the objects without a match (IoU ≥ 0.5) in the
    other method filled with it; matched objects keep the grey inside their outlines.

    Parameters
    ----------
    target : numpy.ndarray
        ``(Y, X)`` real stain.
    comparison : SegmenterComparison
        The two segmentations of ``target`` and their matching.

    Returns
    -------
    numpy.ndarray
        ``(Y, X, 3)`` float RGB in 0…1.
    """
    grey = 0.8 * _stretch(target, *np.percentile(target, [0.5, 99.5]))
    rgb = np.repeat(grey[..., None], 3, -1)
    only_judge, only_other = comparison.unmatched_masks()
    for mask, colour in ((only_judge, JUDGE_RGB), (only_other, OTHER_RGB)):
        rgb[mask] = (1 - _FILL) * rgb[mask] + _FILL * np.asarray(colour)
    for labels, colour in ((comparison.judge, JUDGE_RGB), (comparison.other, OTHER_RGB)):
        rgb[find_boundaries(labels, mode="inner")] = colour
    return rgb


def disagreement_figure(disagreement: Disagreement, rulers: NucleiRulers) -> bytes:
    """The real stain and :func:`disagreement_rgb` side by side, titled with the counts of both segmenters."""
    d, target, comparison = disagreement, disagreement.target, disagreement.comparison
    if target is None or comparison is None:
        raise ValueError(f"{d.image}: its arrays were not kept; only the images kept for panels draw")
    aspect = target.shape[0] / target.shape[1]
    tile_h = min(5.0 * max(aspect, 1.0), 8.0)  # large enough to tell the objects apart
    tile_w = min(tile_h / aspect, 5.0 * 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(tile_w * 2 * 1.05, tile_h + 0.6))
    axes[0].imshow(_stretch(target, *np.percentile(target, [0.5, 99.5])), cmap="gray", interpolation="nearest")
    axes[0].set_title("real stain", fontsize=8)
    axes[1].imshow(disagreement_rgb(target, comparison), interpolation="nearest")
    axes[1].set_title(f"{rulers.judge} (orange) vs {rulers.other} (cyan); filled: no match at IoU ≥ 0.5", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{d.image} — {d.channel}: {rulers.judge} {d.n_judge}, {rulers.other} {d.n_other}, matched "
                 f"{d.matched} (F1 {d.f1:.2f}); only {rulers.judge} {d.only_judge}, only {rulers.other} {d.only_other}",
                 fontsize=8)
    return _png(fig)


def tolerance_figure(curve: ToleranceCurve, images: list[ToleranceIndex], name: str) -> bytes:
    """VirFluoNet's tolerance curve of one channel: IE, SE and IE + SE against the threshold, mean over the images
    (each image's IE + SE thin), the minimum marked, and the 50/255 threshold of the error maps dotted."""
    x = curve.threshold_fraction * 100
    fig, ax = plt.subplots(figsize=(3.8, 3.0))
    if len(images) > 1:
        for index in images:
            ax.plot(x, index.total, color="#bbbbbb", lw=0.6)
    ax.plot(x, curve.intensity_error, color="#1f77b4", label="intensity error IE")
    ax.plot(x, curve.spatial_error, color="#ff7f0e", label="spatial error SE")
    ax.plot(x, curve.total, color="black", lw=1.6, label="IE + SE")
    ax.plot(curve.best_threshold * 100, curve.tolerance_level, "o", color=PREDICTION_COLOUR, zorder=3,
            label=f"minimum TL = {curve.tolerance_level:.3f} at {curve.best_threshold * 100:.0f} %")
    ax.axvline(ERROR_TOLERANCE * 100, color="#888888", ls=":", lw=0.8)
    ax.set_xlabel("threshold on |virtual − real| (% of the target's range)", fontsize=8)
    ax.set_ylabel("error (fraction)", fontsize=8)
    ax.set_title(f"{name}: tolerance curve ({len(images)} image(s))", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, max(1.0, float(curve.total.max())) * 1.02)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)
    return _png(fig)


def violin_figure(rows: list[ImageRow]) -> bytes:
    """Violins of per-image Pearson r per channel, with the input-vs-target baseline beside each where known."""
    channels = list(dict.fromkeys(r.channel for r in rows))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(channels), 3.0))
    data, positions, colours, ticks = [], [], [], []
    for k, name in enumerate(channels):
        mine = [r for r in rows if r.channel == name]
        model = [r.pixels.pearson_r for r in mine if np.isfinite(r.pixels.pearson_r)]
        base = [r.baseline.pearson_r for r in mine if np.isfinite(r.baseline.pearson_r)]
        for values, offset, colour in ((model, -0.18, PREDICTION_COLOUR), (base, 0.18, "#888888")):
            if values:
                data.append(values)
                positions.append(k + offset)
                colours.append(colour)
        ticks.append(k)
    for values, pos, colour in zip(data, positions, colours):
        if len(values) > 1:
            parts = ax.violinplot([values], [pos], widths=0.32, showmedians=True)
            for body in cast(list, parts["bodies"]):  # typed as one Collection, but a list of them
                body.set_facecolor(colour)
            for key in ("cmedians", "cmins", "cmaxes", "cbars"):
                parts[key].set_color(colour)
        ax.scatter(np.full(len(values), pos), values, s=8, color=colour, zorder=3)
    ax.set_xticks(ticks, channels, fontsize=8)
    ax.set_ylabel("Pearson r per image")
    ax.set_ylim(min(0.0, *(min(v) for v in data)) if data else 0, 1.0)
    ax.plot([], [], "s", color=PREDICTION_COLOUR, label="prediction vs target")
    ax.plot([], [], "s", color="#888888", label="input vs target (baseline)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def joint_histogram_figure(pairs: list[np.ndarray], name: str) -> bytes:
    """Log-scaled intensity–intensity histogram of (target, prediction) pixels with the identity line."""
    pooled = np.concatenate(pairs, axis=1)
    lo, hi = np.percentile(pooled, [0.1, 99.9])  # a few outlying pixels must not squeeze the plot
    counts, t_edges, p_edges = joint_histogram(pooled[1], pooled[0], bins=96, value_range=(float(lo), float(hi)))
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    ax.imshow(np.log1p(counts.T), origin="lower", cmap="inferno", aspect="auto",
              extent=(t_edges[0], t_edges[-1], p_edges[0], p_edges[-1]))
    ax.plot(t_edges[[0, -1]], t_edges[[0, -1]], color="white", lw=0.8, ls="--")
    ax.set_xlabel(f"real {name}", fontsize=8)
    ax.set_ylabel(f"virtual {name}", fontsize=8)
    ax.set_title("joint histogram (log counts)", fontsize=8)
    ax.tick_params(labelsize=6)
    return _png(fig)


def count_scatter_figure(rows: list[ImageRow], name: str, noun: str) -> bytes:
    """Objects per image (rows of one channel with an object readout): virtual against real, identity line, ±5 % band."""
    objects = [r.objects for r in rows if r.objects is not None]
    t = np.array([o.count_target for o in objects], float)
    p = np.array([o.count_prediction for o in objects], float)
    top = max(1.0, t.max(initial=0), p.max(initial=0)) * 1.08
    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    ax.fill_between([0, top], [0, 0.95 * top], [0, 1.05 * top], color="#cccccc", alpha=0.6, label="±5 %")
    ax.plot([0, top], [0, top], color="black", lw=0.8)
    ax.scatter(t, p, s=14, color=PREDICTION_COLOUR, zorder=3)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"{noun} in real {name}", fontsize=8)
    ax.set_ylabel(f"{noun} in virtual {name}", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=6)
    return _png(fig)


def distributions_figure(pool: ChannelPool, noun: str, unit: str) -> bytes:
    """Object areas (real vs virtual, ``unit``²) and centroid displacements of matched objects (``unit``)."""
    at, ap = np.concatenate(pool.area_target), np.concatenate(pool.area_prediction)
    disp = np.concatenate(pool.displacement)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6.4, 2.8))
    both = np.concatenate([at, ap])
    bins = np.linspace(both.min(), both.max(), 30) if both.size and both.max() > both.min() else 10
    a1.hist(at, bins=bins, alpha=0.6, color=TARGET_COLOUR, label=f"real ({at.size})")
    a1.hist(ap, bins=bins, alpha=0.6, color=PREDICTION_COLOUR, label=f"virtual ({ap.size})")
    a1.set_xlabel(f"{noun} area ({'µm²' if unit == 'µm' else 'px²'})", fontsize=8)
    a1.legend(fontsize=7)
    a2.hist(disp, bins=30, color="#555555")
    a2.set_xlabel(f"centroid displacement of matched {noun} ({unit})", fontsize=8)
    for ax in (a1, a2):
        ax.tick_params(labelsize=6)
    return _png(fig)


def reliability_figure(calibration: ChannelCalibration, name: str) -> bytes:
    """Reliability diagram of one channel's calibrated σ: RMS error against mean σ per σ decile, identity dashed."""
    s, e = np.asarray(calibration.reliability_sigma), np.asarray(calibration.reliability_rms)
    top = float(np.nanmax(np.concatenate([s, e]))) * 1.08 if s.size else 1.0
    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    ax.plot([0, top], [0, top], color="black", lw=0.8, ls="--", label="calibrated")
    ax.plot(s, e, "o-", color=PREDICTION_COLOUR, ms=4, label="σ deciles")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"predicted σ of {name}", fontsize=8)
    ax.set_ylabel("RMS error", fontsize=8)
    ax.set_title(f"{name}: 1σ holds {100 * (calibration.coverage_1sigma or 0):.0f} % (normal 68 %)", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)
    return _png(fig)


def sigma_figure(panel: SigmaPanel) -> bytes:
    """The calibrated σ map beside the absolute error of the same image, on one colour scale."""
    sigma, error = _plane(panel.sigma), _plane(panel.abs_error)
    hi = float(np.percentile(np.concatenate([sigma.ravel(), error.ravel()]), 99.5)) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    for ax, image, title in ((axes[0], sigma, "predicted σ"), (axes[1], error, "|virtual − real|")):
        shown = ax.imshow(image, cmap="magma", vmin=0, vmax=hi)
        ax.set_title(f"{panel.image} — {panel.channel}: {title}", fontsize=7)
        ax.axis("off")
    fig.colorbar(shown, ax=axes, fraction=0.025)
    return _png(fig)
