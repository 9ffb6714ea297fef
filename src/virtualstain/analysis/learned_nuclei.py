"""What the learned nuclei segmenter predicts, and how its maps become instances (no torch).

The network sees images rescaled so that the typical nucleus is :data:`CANONICAL_DIAMETER_PX` across
(the diameter estimated by :func:`~virtualstain.analysis.estimate_nucleus_diameter`; from the labels in
training), which makes one model work across magnifications. It predicts two maps:

* ``foreground`` — 1 inside nuclei, 0 outside;
* ``distance`` — the distance to the nucleus' edge divided by its largest value in that nucleus (1 at
  each nucleus' centre, falling to 0 at its edge), so touching nuclei are separated by a valley whatever
  their size.

Instances: the foreground above ``foreground_threshold``; seeds are the connected regions where the
distance map exceeds ``seed_threshold`` (each nucleus' inner core); a watershed of the inverted distance
map from those seeds, inside the foreground, gives one label per seed; objects smaller than
``min_area_fraction`` of a canonical nucleus disc are dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from .segmentation import filter_by_area

#: Nucleus diameter (px) the segmenter's input is rescaled to.
CANONICAL_DIAMETER_PX = 24.0


def target_maps(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of instance ``labels`` ``(Y, X)``: foreground (0/1) and normalised distance (0…1).

    Returns
    -------
    foreground, distance : numpy.ndarray
        float32 maps of the labels' shape; ``distance`` is each object's Euclidean distance to its own edge
        (touching objects are separated) divided by that object's maximum.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"target_maps expects 2D integer labels, got {labels.dtype} of shape {labels.shape}")
    # distance to the nearest pixel that is not this object's: background or another object
    edges = np.zeros(labels.shape, bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[1:] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    inside = (labels > 0) & ~edges
    distance = ndi.distance_transform_edt(inside) + (labels > 0)
    peak = ndi.maximum(distance, labels, np.arange(labels.max() + 1)) if labels.max() else np.zeros(1)
    peak = np.asarray(peak, np.float64)
    peak[0] = 1.0
    normalised = np.where(labels > 0, distance / np.maximum(peak[labels], 1e-9), 0.0)
    return (labels > 0).astype(np.float32), normalised.astype(np.float32)


def instances_from_maps(foreground: np.ndarray, distance: np.ndarray, foreground_threshold: float = 0.5,
                        seed_threshold: float = 0.5, min_area_px: float = 0.0) -> np.ndarray:
    """Instance labels (int32, consecutive from 1) from predicted foreground and distance maps ``(Y, X)``.

    Parameters
    ----------
    foreground, distance : numpy.ndarray
        The segmenter's two output maps, in the image's pixel grid.
    foreground_threshold : float
        Foreground probability above which a pixel belongs to a nucleus.
    seed_threshold : float
        Normalised distance above which a pixel belongs to a nucleus' core (one seed per core).
    min_area_px : float
        Smaller objects are dropped (px²).
    """
    mask = foreground > foreground_threshold
    seeds = ndi.label((distance > seed_threshold) & mask)[0]
    labels = watershed(-distance, seeds, mask=mask)
    return filter_by_area(labels, 1.0, min_area_px)
