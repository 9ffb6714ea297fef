"""Classical nuclei segmentation of a fluorescence (or virtual-stain) image, parameters in µm.

Gaussian smoothing (σ = ``smooth_um``) → threshold (Otsu unless given, computed on the smoothed image
clipped at its 99th percentile so that bright chromatin spots and a few very bright nuclei do not lift it
above dim nuclei: on four CTC SIM+ frames F1 0.72 → 0.84, StarDist 0.71 → 0.75, BBBC039 unchanged) →
hole filling → watershed of the distance transform to split touching nuclei → removal of objects outside
[``min_area_um2``, ``max_area_um2``].

Watershed markers are the h-maxima of the distance map (itself smoothed with σ = ``smooth_um``): a
regional maximum becomes a nucleus centre only if it rises at least ``split_depth_um`` above the saddle
that joins it to a higher one. Unlike a minimum distance between centres this does not assume a nucleus
size, so small and large nuclei in one field are split by the same rule (the neck between two touching
round nuclei is shallower than their radii; a ragged outline gives maxima only a fraction of a µm deep).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed


def segment_nuclei(image: np.ndarray, pixel_size_um: float = 1.0, smooth_um: float = 1.0,
                   split_depth_um: float = 0.5, min_area_um2: float = 20.0, max_area_um2: float | None = None,
                   threshold: float | None = None) -> np.ndarray:
    """Instance labels of nuclei (0 = background) in a 2D image ``(Y, X)``.

    Parameters
    ----------
    image : numpy.ndarray
        2D fluorescence-like image (bright nuclei).
    pixel_size_um : float
        µm per pixel; every other length is in µm (with the default 1.0 they are pixels).
    smooth_um : float
        Gaussian σ of the pre-smoothing and of the distance map.
    split_depth_um : float
        Depth h of the distance-map maxima kept as nucleus centres; larger values split less.
    min_area_um2, max_area_um2 : float
        Objects outside this area range (µm²) are removed.
    threshold : float, optional
        Foreground intensity threshold (after smoothing); default Otsu.

    Returns
    -------
    numpy.ndarray
        int32 labels, consecutive from 1; all zero for a constant image.
    """
    sigma_px = smooth_um / pixel_size_um
    foreground = smoothed_foreground(image, sigma_px, threshold, "segment_nuclei", clip_percentile=99.0)
    if foreground is None:
        return np.zeros(np.shape(image), np.int32)
    mask = ndi.binary_fill_holes(foreground)
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask) * pixel_size_um, sigma_px)
    markers = ndi.label(h_maxima(distance, split_depth_um) & mask)[0]
    return filter_by_area(watershed(-distance, markers, mask=mask), pixel_size_um, min_area_um2, max_area_um2)


def smoothed_foreground(image: np.ndarray, sigma_px: float, threshold: float | None, caller: str,
                        clip_percentile: float | None = None) -> np.ndarray | None:
    """Pixels of the Gaussian-smoothed 2D ``image`` above ``threshold`` (Otsu if None, on the smoothed image
    clipped at ``clip_percentile`` when given); None if it is constant."""
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"{caller} expects a 2D image (Y, X), got shape {img.shape}")
    smooth = ndi.gaussian_filter(img, sigma_px)
    if smooth.min() == smooth.max():
        return None
    if threshold is None:
        clipped = smooth if clip_percentile is None else np.minimum(smooth, np.percentile(smooth, clip_percentile))
        threshold = threshold_otsu(clipped if clipped.min() < clipped.max() else smooth)
    return smooth > threshold


def filter_by_area(labels: np.ndarray, pixel_size_um: float, min_area_um2: float,
                   max_area_um2: float | None = None) -> np.ndarray:
    """Drop objects outside [``min_area_um2``, ``max_area_um2``] (µm²) and relabel the rest 1, 2, … (int32)."""
    areas = np.bincount(labels.ravel()) * pixel_size_um ** 2
    keep = areas >= min_area_um2
    if max_area_um2 is not None:
        keep &= areas <= max_area_um2
    keep[0] = False
    relabel = np.zeros(len(areas), np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[labels]
