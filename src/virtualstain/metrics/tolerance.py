"""VirFluoNet's tolerance-level error index (Eq. 7) and its thresholded error map, with the reading used here stated.

On the absolute-difference map D = |O − G| of a prediction O and its ground truth G in a range
[0, B] (B = 2^bits − 1, e.g. 255, or a stated data range), for thresholds t_i = i/100 · B, i = 0…99:

* IE(t) — intensity error: the mean of D over the pixels with D ≤ t (the differences tolerated),
  divided by B (0 where no pixel is tolerated);
* SE(t) — spatial error: the area fraction of pixels with D > t (the segmented error area);

and TL = min_i β₁·IE(t_i) + β₂·SE(t_i) with β₁ = β₂ = 1 by default. IE grows and SE shrinks with t.

Where the minimum lies
----------------------
At any threshold let a fraction n of the pixels be tolerated, with IE their mean D / B, and let m be
the mean D / B of the others. Tolerating every pixel gives β₁·MAE/B = β₁·(n·IE + (1 − n)·m), which is
below the current β₁·IE + β₂·(1 − n) by (1 − n)·(β₂ + β₁·IE − β₁·m). With β₁ = β₂ that is ≥ 0 whenever
m ≤ 1 + IE, in particular whenever no error exceeds B. So under this reading, with errors within the
range (and max(D) ≤ 0.99·B, the last threshold), the minimum is always the plateau where every pixel
is tolerated: TL = MAE/B, at the first t_i ≥ max(D), and the "best threshold" is the largest error
rounded up to the grid. The curve carries what TL does not: SE(t) is the share of pixels whose error
exceeds t (the complementary distribution of the errors), IE(t) the mean of the errors below t. An
interior minimum needs m > β₂/β₁ + IE: errors beyond B (a prediction far outside the target's range) or
β₁ > β₂ (e.g. β₁ = B / the mean signal of G, the Discussion's normalisation of IE).

How the spatial term is read, against the paper
-----------------------------------------------
The Methods define SE as "binary segmented error function based on threshold that measures the area
fraction between segmented areas on two images above all threshold levels", which admits two readings:
(a) the area of the thresholded difference map, D > t; (b) the area where exactly one of O > t and G > t
(the two images segmented apart). This module uses (a), because

* Fig. 5 shows the error as "binary mask after thresholding of 50 (19% of 255 bit-depth) over absolute
  pixel-wise error" (the green area), and the Methods say "segmentation of absolute difference error
  maps so that error pixels above a certain tolerance are bright green highlights both errors": the
  segmented area is that of D, and SE(t) at t = 50 is the green area of Fig. 5 (:func:`error_area_fraction`
  with its default tolerance 50/255 gives that area for any t);
* Fig. 5D plots "intensity error (IE) and area fraction (intensity-based segmentation) error (SE)"
  against the threshold, and the Discussion says that as the tolerance grows "the area mismatch … tends
  to become smaller": SE falls with t, as (a) does;
* under (b), images without zero pixels (any fluorescence background) have SE(0) = 0 and IE(0) = 0,
  so the index would be minimal, and trivially 0, at t = 0; there would be no tolerance to find.

Normalisation follows the Methods (IE divided by the bit-depth maximum B, SE by the image area). The
Discussion speaks instead of normalising "to the mean signal intensity of ground truth" and "to the
signal image area fraction" without defining the signal; those normalisers are not used. The text copy
of the paper has neither the figures' pixels nor the supplementary material, so this reading is checked
against the captions and the text, not against the plotted values. ``virtualstain evaluate`` takes B as
the target's range (max − min), the data range of its PSNR, SSIM and NRMSE; an 8-bit target spanning
0–255 gives the paper's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: VirFluoNet's error-map threshold (Fig. 5): 50 of 255 grey levels, as a fraction of the range.
ERROR_TOLERANCE = 50 / 255
#: The thresholds t_i / B = i / 100, i = 0…99.
THRESHOLD_FRACTIONS = np.arange(100) / 100


@dataclass
class ToleranceIndex:
    """The tolerance curve and its minimum.

    Attributes
    ----------
    thresholds : numpy.ndarray
        t_i in intensity units (100 values, i/100 · :attr:`data_range`).
    intensity_error, spatial_error, total : numpy.ndarray
        IE(t_i), SE(t_i) and β₁·IE + β₂·SE (unitless).
    tolerance_level : float
        min(total).
    best_threshold : float
        The t_i at the minimum (the first one, on ties), intensity units.
    data_range : float
        B, the range the thresholds and IE are scaled by.
    """

    thresholds: np.ndarray
    intensity_error: np.ndarray
    spatial_error: np.ndarray
    total: np.ndarray
    tolerance_level: float
    best_threshold: float
    data_range: float

    @property
    def best_index(self) -> int:
        """i of the minimum."""
        return int(np.argmin(self.total))


def _differences(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    o, g = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if o.shape != g.shape:
        raise ValueError(f"prediction shape {o.shape} differs from target shape {g.shape}")
    return np.abs(o - g)


def tolerance_index(prediction: np.ndarray, target: np.ndarray, bit_depth: int = 8, beta_intensity: float = 1.0,
                    beta_spatial: float = 1.0, *, data_range: float | None = None) -> ToleranceIndex:
    """Compute VirFluoNet's tolerance-level error index of ``prediction`` against ``target``.

    Parameters
    ----------
    prediction, target : numpy.ndarray
        Images of the same shape (any number of axes), in the range [0, B].
    bit_depth : int
        Bits of the image range: B = 2^bit_depth − 1 unless ``data_range`` is given.
    beta_intensity, beta_spatial : float
        Weights β₁ and β₂.
    data_range : float, optional
        B itself, in intensity units (e.g. the target's max − min); must be > 0.

    Returns
    -------
    ToleranceIndex
        Computed exactly from the sorted differences (one sort, then a cumulative sum per threshold).
    """
    top = float(data_range) if data_range is not None else 2.0 ** bit_depth - 1
    if not top > 0:
        raise ValueError(f"data_range must be > 0, got {top}")
    d = np.sort(_differences(prediction, target).ravel())
    thresholds = THRESHOLD_FRACTIONS * top
    tolerated = np.searchsorted(d, thresholds, side="right")  # pixels with D ≤ t_i
    summed = np.concatenate([[0.0], np.cumsum(d)])[tolerated]
    ie = np.divide(summed, tolerated * top, out=np.zeros(thresholds.size), where=tolerated > 0)
    se = 1.0 - tolerated / d.size
    total = beta_intensity * ie + beta_spatial * se
    best = int(np.argmin(total))
    return ToleranceIndex(thresholds, ie, se, total, float(total[best]), float(thresholds[best]), top)


def error_mask(prediction: np.ndarray, target: np.ndarray, data_range: float,
               tolerance: float = ERROR_TOLERANCE) -> np.ndarray:
    """Pixels whose absolute error exceeds ``tolerance`` of the range: |O − G| > tolerance · data_range.

    Parameters
    ----------
    prediction, target : numpy.ndarray
        Same shape, same units.
    data_range : float
        The range the tolerance is a fraction of (intensity units), e.g. the target's max − min.
    tolerance : float
        Fraction of ``data_range``; default VirFluoNet's 50/255 (Fig. 5's green mask).

    Returns
    -------
    numpy.ndarray of bool
        Same shape as the images.
    """
    return _differences(prediction, target) > tolerance * data_range


def error_area_fraction(prediction: np.ndarray, target: np.ndarray, data_range: float,
                        tolerance: float = ERROR_TOLERANCE) -> float:
    """Area fraction of :func:`error_mask`: mean(|O − G| > tolerance · data_range), in [0, 1]; SE at that tolerance."""
    return float(error_mask(prediction, target, data_range, tolerance).mean())
