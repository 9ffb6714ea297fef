"""The typical nucleus diameter of a fluorescence image, estimated from the image itself (px).

When neither a pixel size nor an object size is known, every length of a segmentation (smoothing,
split depth, minimum area) has to come from somewhere; cellpose estimates the object diameter from the
image and rescales to it. Here the estimate is classical and needs no model:

1. smooth with σ = 1 px, threshold (Otsu, as the segmenter does), fill holes, open with a 3×3 square (drops single-pixel noise);
2. label the connected foreground; keep components of ≥ ``min_pixels`` px that do not touch the border;
3. a component that is one nucleus is convex (solidity ≥ 0.93; two tangent discs have 0.905): its
   diameter is the equivalent-circle
   diameter 2·√(area/π), the measure cellpose uses; a cluster of touching nuclei is not convex, and its
   nuclei are sized by the distance-map maxima inside it instead (2 × the inscribed-circle radius of each
   lobe, corrected by the ratio of equivalent to inscribed diameter measured on the convex components);
4. the area-weighted median over all nuclei (the diameter below which half of the nuclear area lies, so
   fragments and debris weigh little) is the estimate, then steps 1–4 are repeated once with σ = 0.1 ×
   the first estimate (large, textured nuclei are otherwise split by their own texture).

The Otsu threshold is computed on the smoothed image clipped at its 99th percentile, so that bright
chromatin spots do not pull it above dim nuclei. On the reference images with manual labels (10 BBBC039,
the StarDist image, the celldetective Hoechst channel, four CTC SIM+ frames) the estimate is 0.88–1.27×
the labels' median equivalent diameter, except for one BBBC039 image where most labelled objects are
micronuclei (3.1×: the estimate follows the nuclei that hold most of the area).

:func:`segmentation_lengths` turns the estimate into the lengths of
:func:`~virtualstain.analysis.segment_nuclei` when no pixel size is known: σ = 0.05 d, split depth
0.02 d, minimum area 5 % of a disc of diameter d. With a pixel size the µm defaults hold (σ 1 µm, split
depth 0.5 µm, minimum area 20 µm², a quarter of a 10 µm nucleus), except that the minimum area never
exceeds a quarter of the estimated nucleus area: on the CTC SIM+ frames (0.124 µm/px, HL60 nuclei of ≈ 6 µm)
20 µm² dropped 60 % of the nuclei of the last frame (F1 at frames 0/20/40/64: 0.98/0.77/0.90/0.54 → with
the cap 1.00/0.88/0.98/0.69).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.morphology import h_maxima
from skimage.segmentation import clear_border

from .segmentation import smoothed_foreground

#: Solidity above which a component counts as one nucleus.
_CONVEX = 0.93
#: Lengths of the classical segmenter as fractions of the typical nucleus diameter d: smoothing σ, split
#: depth (both × d) and minimum area (× π d² / 4). Chosen on the reference images named in the docstring
#: (BBBC039 / StarDist / celldetective / CTC SIM+): F1 at IoU 0.5 there 0.86 / 0.75 / 0.92 / 0.84 against
#: 0.87 / 0.74 / 0.91 / 0.71 for fixed 1 px, 0.5 px, 20 px²; count errors 15 / 18 / 4 / 7 % vs 12 / 17 / 2 / 23 %.
_SMOOTH, _SPLIT, _MIN_AREA = 0.05, 0.02, 0.05
#: The µm defaults of segment_nuclei, used when the pixel size is known.
_UM_DEFAULTS = (1.0, 0.5, 20.0)
#: With a pixel size, the minimum area is at most this fraction of the estimated nucleus area (20 µm² is
#: this fraction of a 10 µm nucleus).
_MIN_AREA_CAP = 0.25


@dataclass(frozen=True)
class NucleusSize:
    """A nucleus-size estimate of one image.

    Attributes
    ----------
    diameter_px : float
        Median equivalent-circle diameter of the nuclei (px); NaN when no nucleus was found.
    n_objects : int
        Nuclei the median is over (convex components plus lobes of clusters).
    """

    diameter_px: float
    n_objects: int

    def describe(self) -> str:
        """One line for the terminal."""
        if not np.isfinite(self.diameter_px):
            return "no nuclei found to estimate their size"
        return f"typical nucleus diameter {self.diameter_px:.1f} px (median of {self.n_objects} objects)"


@dataclass(frozen=True)
class SegmentationLengths:
    """The length parameters of :func:`~virtualstain.analysis.segment_nuclei` for one image, and why.

    Attributes
    ----------
    pixel_size_um : float
        µm per pixel (1.0 when unknown: the lengths below are then in pixels).
    smooth_um, split_depth_um : float
        Smoothing σ and split depth (µm, or px when the pixel size is unknown).
    min_area_um2 : float
        Smallest nucleus kept (µm², or px²).
    reason : str
        Where the lengths come from, for the terminal and reports.
    """

    pixel_size_um: float
    smooth_um: float
    split_depth_um: float
    min_area_um2: float
    reason: str

    def kwargs(self) -> dict[str, float]:
        """Keyword arguments for :func:`~virtualstain.analysis.segment_nuclei`."""
        return {"pixel_size_um": self.pixel_size_um, "smooth_um": self.smooth_um,
                "split_depth_um": self.split_depth_um, "min_area_um2": self.min_area_um2}


def segmentation_lengths(image: np.ndarray, pixel_size_um: float | None) -> SegmentationLengths:
    """Segmentation lengths for ``image`` (2D): the µm defaults with a pixel size (minimum area capped by the
    nuclei's estimated size), else all scaled to its nuclei.

    Parameters
    ----------
    image : numpy.ndarray
        2D image with bright nuclei, used only when ``pixel_size_um`` is None.
    pixel_size_um : float or None
        µm per pixel when known; it wins over the image's estimate.
    """
    size = estimate_nucleus_diameter(image)
    if pixel_size_um:
        smooth, split, area = _UM_DEFAULTS
        reason = f"pixel size {pixel_size_um:g} µm"
        if np.isfinite(size.diameter_px):
            d_um = size.diameter_px * pixel_size_um
            cap = _MIN_AREA_CAP * np.pi * d_um * d_um / 4
            if cap < area:
                area = cap
                reason += f"; minimum area {area:.1f} µm² for nuclei of {d_um:.1f} µm"
        return SegmentationLengths(float(pixel_size_um), smooth, split, area, reason)
    if not np.isfinite(size.diameter_px):
        smooth, split, area = _UM_DEFAULTS
        return SegmentationLengths(1.0, smooth, split, area, f"no pixel size and {size.describe()}: pixel defaults")
    d = size.diameter_px
    return SegmentationLengths(1.0, max(_SMOOTH * d, 0.5), _SPLIT * d, _MIN_AREA * np.pi * d * d / 4,
                               f"no pixel size: {size.describe()}, lengths scaled to it")


def estimate_nucleus_diameter(image: np.ndarray, min_pixels: int = 12) -> NucleusSize:
    """Estimate the typical nucleus diameter (px) of a 2D image ``(Y, X)`` with bright nuclei.

    Parameters
    ----------
    image : numpy.ndarray
        2D fluorescence-like image (nuclei brighter than background).
    min_pixels : int
        Components smaller than this (px) are noise, not nuclei.

    Returns
    -------
    NucleusSize
        The estimate; ``diameter_px`` is NaN for a constant image or one without nuclei.
    """
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"estimate_nucleus_diameter expects a 2D image (Y, X), got shape {img.shape}")
    first = _estimate(img, 1.0, min_pixels)
    if not np.isfinite(first.diameter_px):
        return first
    second = _estimate(img, max(1.0, 0.1 * first.diameter_px), min_pixels)
    return second if np.isfinite(second.diameter_px) else first


def _estimate(img: np.ndarray, sigma_px: float, min_pixels: int) -> NucleusSize:
    foreground = smoothed_foreground(img, sigma_px, None, "estimate_nucleus_diameter", clip_percentile=99.0)
    if foreground is None:
        return NucleusSize(float("nan"), 0)
    mask = ndi.binary_opening(ndi.binary_fill_holes(foreground), np.ones((3, 3), bool))
    labels = ndi.label(mask)[0]
    inner = clear_border(labels)
    props = [p for p in regionprops(inner if inner.any() else labels) if p.area >= min_pixels]
    convex = [p for p in props if p.solidity >= _CONVEX]
    diameters = [p.equivalent_diameter_area for p in convex]
    # equivalent vs inscribed diameter on single nuclei (1 for discs, > 1 for ellipses)
    ratios = [p.equivalent_diameter_area / (2 * ndi.distance_transform_edt(p.image).max()) for p in convex]
    ratio = float(np.median(ratios)) if ratios else 1.0
    for p in props:
        if p.solidity >= _CONVEX:
            continue
        distance = ndi.distance_transform_edt(np.pad(p.image, 1))
        peaks = ndi.label(h_maxima(distance, 1.0))[0]
        radii = ndi.maximum(distance, peaks, np.arange(1, peaks.max() + 1))
        diameters.extend(2 * ratio * np.asarray(radii, float))
    if not diameters:
        return NucleusSize(float("nan"), 0)
    return NucleusSize(_area_weighted_median(np.asarray(diameters)), len(diameters))


def _area_weighted_median(diameters: np.ndarray) -> float:
    """The diameter that half of the nuclei's total area lies below (fragments weigh little)."""
    order = np.sort(diameters)
    cumulative = np.cumsum(order ** 2)
    return float(order[np.searchsorted(cumulative, cumulative[-1] / 2)])
