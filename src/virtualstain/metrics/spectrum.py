"""Power spectra of images: how much fine detail a prediction keeps (blur), relative to its target.

Each (Y, X) plane minus its mean is multiplied by a periodic Hann window w(n) = sin²(πn/N) along Y and X (so the
jump between opposite edges of the periodic extension leaks no power to high frequencies) and its 2D DFT's power
|G(k)|² is averaged over any leading axes. Frequencies are in cycles per pixel, f = (k_y/N_y, k_x/N_x) with the
Nyquist frequency 0.5; the **radially averaged power spectrum** averages the power over rings of |f|.

The high-frequency power ratio (VirFluoNet's reason for a GAN: MAE/MSE-trained networks blur):

    ratio = Σ_{|f| > f_c} P_pred(f) / Σ_{|f| > f_c} P_target(f),    f_c = ½ · Nyquist = 0.25 cycles/px,

computed from the mean-free, windowed planes of both images in their own (same) units: 1 means as much fine
detail as the target, < 1 a blurred prediction, ≫ 1 added noise or artefacts (a checkerboard: see
:mod:`~virtualstain.metrics.checkerboard`).
"""

from __future__ import annotations

import numpy as np

#: The cut-off of the high-frequency band as a share of the Nyquist frequency.
HIGH_FREQUENCY_SHARE = 0.5
#: Share of the total power below which a band holds only float rounding.
_ROUNDING = 1e-12


def hann(n: int) -> np.ndarray:
    """Periodic Hann window sin²(πk/n), k = 0…n−1 (its DFT has 3 non-zero bins: 0 and ±1)."""
    return np.sin(np.pi * np.arange(n) / n) ** 2


def power_spectrum(image: np.ndarray) -> np.ndarray:
    """Power |G(k)|² of the mean-free, Hann-windowed (Y, X) planes of ``image`` (``(..., Y, X)``), averaged over
    the leading axes: ``(Y, X)`` in numpy's FFT order (DC at [0, 0])."""
    a = np.asarray(image, np.float64)
    if a.ndim < 2 or a.shape[-2] < 2 or a.shape[-1] < 2:
        raise ValueError(f"need an image of shape (..., Y, X) with Y, X ≥ 2, got shape {a.shape}")
    window = np.outer(hann(a.shape[-2]), hann(a.shape[-1]))
    a = (a - a.mean(axis=(-2, -1), keepdims=True)) * window
    return (np.abs(np.fft.fft2(a)) ** 2).reshape(-1, *a.shape[-2:]).mean(axis=0)


def radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    """|f| in cycles per pixel of each DFT bin of a ``(Y, X)`` plane (numpy's FFT order)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    return np.hypot(fy, fx)


def radial_power_spectrum(image: np.ndarray, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of ``image`` (``(..., Y, X)``).

    Returns
    -------
    frequency : numpy.ndarray
        ``(bins,)`` ring centres in cycles per pixel, from 0 to the Nyquist frequency 0.5.
    power : numpy.ndarray
        ``(bins,)`` mean power per ring (NaN for a ring without DFT bins).
    """
    p = power_spectrum(image)
    f = radial_frequency(p.shape)
    edges = np.linspace(0.0, 0.5, bins + 1)
    ring = np.clip(np.digitize(f.ravel(), edges) - 1, 0, bins)
    sums = np.bincount(ring, weights=p.ravel(), minlength=bins + 1)[:bins]
    counts = np.bincount(ring, minlength=bins + 1)[:bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (edges[1:] + edges[:-1]), sums / counts


def high_frequency_power_ratio(prediction: np.ndarray, target: np.ndarray,
                               share: float = HIGH_FREQUENCY_SHARE) -> float:
    """Power above ``share`` × Nyquist of ``prediction`` over that of ``target`` (see the module docstring).

    Parameters
    ----------
    prediction, target : numpy.ndarray
        ``(..., Y, X)`` of the same shape, the same units.
    share : float
        Cut-off as a share of the Nyquist frequency (0.5 cycles/px).

    Returns
    -------
    float
        The ratio; NaN when the target has no power above the cut-off (≤ 1e-12 of its total: rounding only).
    """
    if np.shape(prediction) != np.shape(target):
        raise ValueError(f"prediction {np.shape(prediction)} and target {np.shape(target)} differ in shape")
    p, t = power_spectrum(prediction), power_spectrum(target)
    high = radial_frequency(t.shape) > share * 0.5
    denominator = float(t[high].sum())
    return float(p[high].sum() / denominator) if denominator > _ROUNDING * float(t.sum()) else float("nan")
