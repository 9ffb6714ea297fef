"""Cell areas from a junction (membrane, ZO-1, E-cadherin) image: the FRM recipe, parameters in µm.

Gaussian smoothing (σ = ``smooth_um``) → threshold (Otsu unless given) → skeletonise the junction mask
to one-pixel lines → close small gaps with one 3×3 dilation → invert → label the enclosed regions with
4-connectivity (so a region cannot leak through a diagonal step of the skeleton) → drop regions that touch
the image border (their area is cut off) or fall outside [``min_area_um2``, ``max_area_um2``]. Each cell
then grows back over the dilated junction line (``skimage.segmentation.expand_labels`` by 2 px) so that
neighbouring cells meet at the junction centre line and areas are not biased low by the line width.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize
from skimage.segmentation import clear_border, expand_labels

from .segmentation import filter_by_area, smoothed_foreground


def segment_cells_from_junctions(image: np.ndarray, pixel_size_um: float = 1.0, smooth_um: float = 1.0,
                                 threshold: float | None = None, min_area_um2: float = 20.0,
                                 max_area_um2: float | None = None, exclude_border: bool = True) -> np.ndarray:
    """Instance labels of cells (0 = junctions and background) outlined in a 2D junction image ``(Y, X)``.

    Parameters
    ----------
    image : numpy.ndarray
        2D image with bright cell–cell junctions.
    pixel_size_um : float
        µm per pixel; other lengths are in µm (with 1.0 they are pixels).
    smooth_um : float
        Gaussian σ before thresholding.
    threshold : float, optional
        Junction intensity threshold (after smoothing); default Otsu.
    min_area_um2, max_area_um2 : float
        Regions outside this area range (µm², before growing back over the junction) are removed.
    exclude_border : bool
        Remove cells touching the image border.

    Returns
    -------
    numpy.ndarray
        int32 labels, consecutive from 1; all zero for a constant image.
    """
    junctions = smoothed_foreground(image, smooth_um / pixel_size_um, threshold, "segment_cells_from_junctions")
    if junctions is None:
        return np.zeros(np.shape(image), np.int32)
    lines = ndi.binary_dilation(skeletonize(junctions), structure=np.ones((3, 3), bool))
    regions = ndi.label(~lines)[0]  # default structure: 4-connectivity
    if exclude_border:
        regions = clear_border(regions)
    cells = filter_by_area(regions, pixel_size_um, min_area_um2, max_area_um2)
    return expand_labels(cells, distance=2).astype(np.int32)
