"""Data for plots: the intensity–intensity joint histogram and line profiles."""

from __future__ import annotations

import numpy as np
from skimage.measure import profile_line


def joint_histogram(prediction: np.ndarray, target: np.ndarray, bins: int = 128,
                    value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D histogram of (target, prediction) pixel pairs.

    Returns
    -------
    counts : numpy.ndarray
        ``(bins, bins)``, rows = target bins, columns = prediction bins.
    target_edges, prediction_edges : numpy.ndarray
        Bin edges (``bins + 1`` each); by default both span the joint min…max.
    """
    p, t = np.asarray(prediction, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.size} pixels, target {t.size}")
    if value_range is None:
        value_range = (float(min(p.min(), t.min())), float(max(p.max(), t.max())))
    counts, t_edges, p_edges = np.histogram2d(t, p, bins=bins, range=[value_range, value_range])
    return counts, t_edges, p_edges


def line_profiles(images: dict[str, np.ndarray], start: tuple[float, float], end: tuple[float, float],
                  linewidth: int = 1) -> dict[str, np.ndarray]:
    """Intensity along the line ``start`` → ``end`` ((row, col) pixels, both included) of each 2D image."""
    return {name: profile_line(np.asarray(img, np.float64), start, end, linewidth=linewidth, mode="reflect")
            for name, img in images.items()}
