"""Checkerboard artefacts: spectral power at the Nyquist frequency, relative to the target's.

A decoder that upsamples with 2×2 transposed convolutions of stride 2 gives neighbouring output
pixels different weights, which shows as a period-2 pattern (a checkerboard, or stripes along Y or X).
Such a pattern's power lies in the **Nyquist bins** of the 2D discrete Fourier transform over the
last two axes (Y, X): the row k_y = N_y/2 and the column k_x = N_x/2 (period 2 along Y, along X, or
along both). Each (Y, X) plane minus its mean (the DC removed) is multiplied by a periodic Hann window
w(n) = sin²(πn/N) along Y and X, so that the jump between opposite edges of the periodic extension
leaks no power to high frequencies (unwindowed, a smooth random field has a share of ~3·10⁻⁴ from its
edges alone); with ``G`` the 2D DFT of that windowed plane,

    share = Σ_{k_y = N_y/2 or k_x = N_x/2} |G(k)|²  /  Σ_k |G(k)|²,

with the power spectra averaged over any leading axes (channels, Z) first. The window spreads a
pattern ±ε·(−1)^(y+x) over the Nyquist bin and its 8 neighbours; 8/9 of its power stays in the Nyquist
row and column. Odd sizes are cropped by one row/column to have a Nyquist bin.
"""

from __future__ import annotations

import numpy as np

from .spectrum import power_spectrum


def nyquist_power_share(image: np.ndarray) -> float:
    """Fraction (0–1) of the spectral power of ``image`` (mean-free, Hann-windowed) in the Nyquist bins.

    Parameters
    ----------
    image : numpy.ndarray
        ``(..., Y, X)``, any units; the 2D spectra over (Y, X) are averaged over the leading axes.
        Y and X must have at least 2 pixels; an odd size loses its last row/column.

    Returns
    -------
    float
        Nyquist power / total power of the mean-free, Hann-windowed planes; 0 for a constant image.

    Raises
    ------
    ValueError
        Fewer than 2 axes, or fewer than 2 pixels along Y or X.
    """
    a = np.asarray(image, np.float64)
    if a.ndim < 2 or a.shape[-2] < 2 or a.shape[-1] < 2:
        raise ValueError(f"need an image of shape (..., Y, X) with Y, X ≥ 2, got shape {a.shape}")
    power = power_spectrum(a[..., : a.shape[-2] // 2 * 2, : a.shape[-1] // 2 * 2])
    ny, nx = power.shape[0] // 2, power.shape[1] // 2
    nyquist = power[ny, :].sum() + power[:, nx].sum() - power[ny, nx]
    total = power.sum()
    return float(nyquist / total) if total > 0 else 0.0


def nyquist_power_ratio(prediction: np.ndarray, target: np.ndarray) -> float:
    """How many times more of its power the prediction has at the Nyquist frequency than the target.

    Parameters
    ----------
    prediction, target : numpy.ndarray
        ``(..., Y, X)`` each (see :func:`nyquist_power_share`); any units, as the shares are unitless.

    Returns
    -------
    float
        ``nyquist_power_share(prediction) / nyquist_power_share(target)``: ≫ 1 is a checkerboard;
        inf when only the target has no Nyquist power, NaN when neither has.
    """
    p, t = nyquist_power_share(prediction), nyquist_power_share(target)
    if t > 0:
        return p / t
    return float("inf") if p > 0 else float("nan")
