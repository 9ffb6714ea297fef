"""Pixel-wise error metrics with explicit data ranges.

mse = mean((p − t)²); mae = mean(|p − t|); nrmse = sqrt(mse) / (max(t) − min(t)) — the RMSE
divided by the **target's range**; psnr = 10·log10(data_range² / mse); ssim as Wang et al. 2004
(scikit-image's implementation, Gaussian-free 7×7 window) with the data range stated, never guessed.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

_WINDOW = 7


def _pair(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    return p, t


def mse(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error (target units²)."""
    p, t = _pair(prediction, target)
    return float(np.mean((p - t) ** 2))


def mae(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error (target units)."""
    p, t = _pair(prediction, target)
    return float(np.mean(np.abs(p - t)))


def nrmse(prediction: np.ndarray, target: np.ndarray) -> float:
    """RMSE divided by the target's range (max − min); NaN for a constant target."""
    p, t = _pair(prediction, target)
    span = t.max() - t.min()
    return float(np.sqrt(np.mean((p - t) ** 2)) / span) if span > 0 else float("nan")


def psnr(prediction: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB for the given ``data_range`` (e.g. 255, or the target's range)."""
    p, t = _pair(prediction, target)
    return float(peak_signal_noise_ratio(t, p, data_range=data_range))


@overload
def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float, full: Literal[False] = ...) -> float: ...
@overload
def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float, full: Literal[True]) -> tuple[float, np.ndarray]: ...
@overload
def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float,
         full: bool) -> float | tuple[float, np.ndarray]: ...
def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float,
         full: bool = False) -> float | tuple[float, np.ndarray]:
    """Structural similarity of 2D or 3D images with an explicit ``data_range`` (7-pixel window).

    Volumes with an axis shorter than the window (thin z-stacks) are scored plane by plane over
    (Y, X) and averaged. Returns the mean SSIM, and with ``full=True`` also the SSIM map.

    Raises
    ------
    ValueError
        Non-positive ``data_range``, or an image smaller than 7×7 in Y, X.
    """
    p, t = _pair(prediction, target)
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    if min(p.shape[-2:]) < _WINDOW:
        raise ValueError(f"SSIM needs images of at least {_WINDOW}×{_WINDOW} pixels in Y, X; got {p.shape}")
    if min(p.shape) >= _WINDOW:
        value, smap = structural_similarity(t, p, data_range=data_range, full=True)
    else:
        planes_t, planes_p = t.reshape(-1, *t.shape[-2:]), p.reshape(-1, *p.shape[-2:])
        scored = [structural_similarity(a, b, data_range=data_range, full=True) for a, b in zip(planes_t, planes_p)]
        value = np.mean([v for v, _ in scored])
        smap = np.stack([m for _, m in scored]).reshape(p.shape)
    return (float(value), smap) if full else float(value)
