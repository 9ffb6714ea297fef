"""Scores of a recovered phase map against its ground truth (radians), as in DL-SRQPI.

ssim and psnr use the truth's range (max − min) as data range; rmse is in radians; the total
phase Σφ·A (rad·µm², proportional to dry mass, see :func:`virtualstain.optics.surface_density`)
is compared as the relative error (Σp − Σt)/Σt.
"""

from __future__ import annotations

import numpy as np

from .pixel import psnr, ssim


def phase_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR (dB), RMSE (rad) and total-phase error of a 2D phase map.

    Returns
    -------
    dict
        ``ssim``, ``psnr_db``, ``rmse_rad``, ``total_phase_error`` (relative; NaN when Σtruth = 0).

    Raises
    ------
    ValueError
        Different shapes or a constant truth.
    """
    p, t = np.asarray(prediction, np.float64), np.asarray(truth, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    span = float(t.max() - t.min())
    if not span > 0:
        raise ValueError("the true phase map is constant; SSIM/PSNR need a phase range")
    total = float(t.sum())
    return {
        "ssim": ssim(p, t, data_range=span),
        "psnr_db": psnr(p, t, data_range=span),
        "rmse_rad": float(np.sqrt(np.mean((p - t) ** 2))),
        "total_phase_error": float((p.sum() - total) / total) if total != 0 else float("nan"),
    }
