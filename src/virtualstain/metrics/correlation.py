"""Correlation metrics: Pearson r, FRM's accuracy score P and segmentation-PCC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from skimage.filters import threshold_otsu


def pearson_r(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation coefficient over all (or the masked) pixels.

    r = Σ(p − p̄)(t − t̄) / sqrt(Σ(p − p̄)² · Σ(t − t̄)²), computed in float64.

    Parameters
    ----------
    prediction, target : numpy.ndarray
        Arrays of the same shape (any axes).
    mask : numpy.ndarray of bool, optional
        Pixels to include.

    Returns
    -------
    float
        r in [−1, 1]; NaN when undefined (fewer than two pixels, or either image constant).

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    p = np.asarray(prediction, np.float64)
    t = np.asarray(target, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    if mask is not None:
        m = np.asarray(mask, bool)
        p, t = p[m], t[m]
    p = p.ravel() - p.mean() if p.size else p.ravel()
    t = t.ravel() - t.mean() if t.size else t.ravel()
    denom = np.sqrt(np.dot(p, p) * np.dot(t, t))
    if p.size < 2 or denom == 0:
        return float("nan")
    return float(np.clip(np.dot(p, t) / denom, -1.0, 1.0))


def signal_threshold(targets: Sequence[np.ndarray]) -> float:
    """Otsu threshold over the pooled pixels of ``targets`` (the default "real signal" level)."""
    values = np.concatenate([np.asarray(t, np.float64).ravel() for t in targets])
    if values.min() == values.max():
        return float(values.min())
    return float(threshold_otsu(values))


def segmentation_pcc(prediction: np.ndarray, target: np.ndarray, threshold: float | None = None) -> float:
    """FRM's segmentation-PCC: Pearson r over the pixels where ``target > threshold``.

    ``threshold`` defaults to the target's Otsu threshold. NaN when fewer than two pixels pass.
    """
    t = np.asarray(target)
    level = signal_threshold([t]) if threshold is None else threshold
    return pearson_r(prediction, t, mask=t > level)


def tiles(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping ``size``×``size`` tiles of the last two axes (partial edge tiles dropped)."""
    h, w = image.shape[-2:]
    return [image[..., y:y + size, x:x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


@dataclass
class AccuracyScore:
    """FRM's accuracy score P and how it was obtained.

    Attributes
    ----------
    p : float
        Mean Pearson r over the images (or tiles) whose target holds real signal; NaN if none.
    n_used, n_total : int
        Images counted, images given.
    threshold : float
        Intensity above which a target pixel is signal.
    per_image : list of float
        r of every image (NaN for those without signal).
    """

    p: float
    n_used: int
    n_total: int
    threshold: float
    per_image: list[float] = field(default_factory=list)


def accuracy_score(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], threshold: float | None = None,
                   min_signal_fraction: float = 0.01) -> AccuracyScore:
    """FRM's accuracy score P: Pearson r averaged over the images whose target contains real signal.

    A target has real signal when at least ``min_signal_fraction`` of its pixels exceed
    ``threshold`` (default: Otsu over all targets pooled). Images without signal (empty
    fields, where r is meaningless) are left out; pass tiles (see :func:`tiles`) to score
    large images FRM-style.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    return accuracy_score_of_r([pearson_r(p, t) for p, t in zip(predictions, targets)], targets, threshold,
                               min_signal_fraction)


def accuracy_score_of_r(r: Sequence[float], targets: Sequence[np.ndarray], threshold: float | None = None,
                        min_signal_fraction: float = 0.01) -> AccuracyScore:
    """FRM's accuracy score P from each image's Pearson r, already computed (see :func:`accuracy_score`).

    ``targets`` decide which images have signal; they may be subsampled (every k-th pixel) when ``r``
    was computed on the full images.
    """
    level = signal_threshold(targets) if threshold is None else float(threshold)
    per_image = [v if has_signal(t, level, min_signal_fraction) else float("nan") for v, t in zip(r, targets)]
    used = [v for v in per_image if np.isfinite(v)]
    return AccuracyScore(float(np.mean(used)) if used else float("nan"), len(used), len(per_image), level, per_image)


def has_signal(target: np.ndarray, threshold: float, min_signal_fraction: float = 0.01) -> bool:
    """True when at least ``min_signal_fraction`` of the target's pixels exceed ``threshold`` (FRM's P rule)."""
    return float(np.mean(np.asarray(target) > threshold)) >= min_signal_fraction
