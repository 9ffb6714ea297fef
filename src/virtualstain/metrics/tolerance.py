"""VirFluoNet's tolerance-level error index (Eq. 7), with the reading used here stated.

On the absolute-difference map D = |O − G| of images in a bit-depth range [0, B]
(B = 2^bits − 1, e.g. 255), for thresholds t_i = i/100 · B, i = 0…99:

* IE(t) — intensity error: the mean of D over the pixels with D ≤ t (the differences tolerated),
  divided by B (0 where no pixel is tolerated);
* SE(t) — spatial error: the area fraction of pixels with D > t (segmented error area);

and TL = min_i β₁·IE(t_i) + β₂·SE(t_i) with β₁ = β₂ = 1 by default. The paper's wording ("mean
absolute error … below all threshold levels", "area fraction … above all threshold levels") leaves
room; this is the reading that makes IE grow and SE shrink with t, so that their sum has the single
minimum the paper describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ToleranceIndex:
    """The tolerance curve and its minimum.

    Attributes
    ----------
    thresholds : numpy.ndarray
        t_i in intensity units (100 values).
    intensity_error, spatial_error, total : numpy.ndarray
        IE(t_i), SE(t_i) and β₁·IE + β₂·SE.
    tolerance_level : float
        min(total).
    best_threshold : float
        The t_i at the minimum (the first one, on ties).
    """

    thresholds: np.ndarray
    intensity_error: np.ndarray
    spatial_error: np.ndarray
    total: np.ndarray
    tolerance_level: float
    best_threshold: float


def tolerance_index(prediction: np.ndarray, target: np.ndarray, bit_depth: int = 8, beta_intensity: float = 1.0,
                    beta_spatial: float = 1.0) -> ToleranceIndex:
    """Compute VirFluoNet's tolerance-level error index of ``prediction`` against ``target``.

    Parameters
    ----------
    prediction, target : numpy.ndarray
        Images of the same shape in the ``bit_depth`` range.
    bit_depth : int
        Bits of the image range (B = 2^bit_depth − 1).
    beta_intensity, beta_spatial : float
        Weights β₁ and β₂.
    """
    o, g = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if o.shape != g.shape:
        raise ValueError(f"prediction shape {o.shape} differs from target shape {g.shape}")
    top = 2.0 ** bit_depth - 1
    d = np.abs(o - g).ravel()
    thresholds = np.arange(100) / 100.0 * top
    ie = np.empty(100)
    se = np.empty(100)
    for i, t in enumerate(thresholds):
        tolerated = d <= t
        ie[i] = d[tolerated].mean() / top if tolerated.any() else 0.0
        se[i] = 1.0 - tolerated.mean()
    total = beta_intensity * ie + beta_spatial * se
    best = int(np.argmin(total))
    return ToleranceIndex(thresholds, ie, se, total, float(total[best]), float(thresholds[best]))
