"""Classical nuclei segmentation of a fluorescence (or virtual-stain) image, parameters in µm.

Gaussian smoothing → threshold (Otsu unless given) → hole filling → distance-transform watershed
(markers: local maxima of the distance map at least ``min_distance_um`` apart) to split touching
nuclei → removal of objects outside [``min_area_um2``, ``max_area_um2``].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed


def segment_nuclei(image: np.ndarray, pixel_size_um: float = 1.0, smooth_um: float = 1.0,
                   min_distance_um: float = 4.0, min_area_um2: float = 20.0, max_area_um2: float | None = None,
                   threshold: float | None = None) -> np.ndarray:
    """Instance labels of nuclei (0 = background) in a 2D image ``(Y, X)``.

    Parameters
    ----------
    image : numpy.ndarray
        2D fluorescence-like image (bright nuclei).
    pixel_size_um : float
        µm per pixel; every other length is in µm (with the default 1.0 they are pixels).
    smooth_um : float
        Gaussian σ of the pre-smoothing.
    min_distance_um : float
        Smallest distance between two nuclei centres (watershed markers).
    min_area_um2, max_area_um2 : float
        Objects outside this area range are removed.
    threshold : float, optional
        Foreground intensity threshold (after smoothing); default Otsu.

    Returns
    -------
    numpy.ndarray
        int32 labels, consecutive from 1.
    """
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"segment_nuclei expects a 2D image (Y, X), got shape {img.shape}")
    smooth = ndi.gaussian_filter(img, smooth_um / pixel_size_um)
    if smooth.min() == smooth.max():
        return np.zeros(img.shape, np.int32)
    level = threshold_otsu(smooth) if threshold is None else threshold
    mask = ndi.binary_fill_holes(smooth > level)
    distance = ndi.distance_transform_edt(mask)
    min_px = max(1, int(round(min_distance_um / pixel_size_um)))
    peaks = peak_local_max(distance, min_distance=min_px, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(img.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    areas = np.bincount(labels.ravel()) * pixel_size_um ** 2
    keep = areas >= min_area_um2
    if max_area_um2 is not None:
        keep &= areas <= max_area_um2
    keep[0] = False
    relabel = np.zeros(len(areas), np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[labels]
