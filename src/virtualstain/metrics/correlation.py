"""Pearson correlation between a prediction and a target."""

from __future__ import annotations

import numpy as np


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
