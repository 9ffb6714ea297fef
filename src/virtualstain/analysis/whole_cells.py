"""Whole cells from a cytoplasm or membrane stain (real or virtual), seeded by the nuclei; parameters in µm.

A seeded watershed (:func:`skimage.segmentation.watershed`) with the nucleus labels as markers, so every
cell keeps the id of the nucleus it grows from (cell k ⊇ nucleus k: the cell-to-nucleus assignment that
compartment dry mass needs is the identity):

* the stain is smoothed with a Gaussian of σ = ``smooth_um``;
* the cell mask is the stain's foreground (threshold: :func:`default_threshold` unless ``threshold`` is
  given) — for a membrane stain the outlines above threshold with their insides filled
  (:func:`filled_outlines`) — always united with the nuclei, and optionally limited to ``max_distance_um``
  from the nearest nucleus;
* the elevation the nuclei flood is, for a membrane stain, the smoothed stain itself (cells meet on the
  bright ridges between them); for a cytoplasm stain the inverted smoothed intensity (cells meet in the dim
  junctions between them, CellProfiler's "Watershed – Intensity").

For a cytoplasm stain the inverted intensity was chosen over the gradient magnitude of the smoothed stain
(Sobel; CellProfiler's "Watershed – Gradient"). On the synthetic tilings of ``tests/test_cells.py`` (16
touching cells, stain fading from the nucleus to the cell edge, dimmer nuclei, a 2-px junction at 0.12 or
0.3 of the brightest stain, two seeds) the worst cell IoU is 0.93–0.94 with the inverted intensity and
0.48 / 0.05 with the gradient: the gradient rings around every nucleus wall its marker in, and the first
flood over its ring takes the neighbouring cells. On the BBBC022 Cell Painting crop (ER channel, 25
nuclei) the median cell / nucleus area is 5.4 with the inverted intensity and 1.6 with the gradient (one
cell takes most of a cluster, the others stay near their nuclei); the boundaries between cells lie on
stain 0.88× the cells' median with the inverted intensity, 1.60× with the gradient.

Pixels of the foreground that no nucleus can reach (a cell whose nucleus is out of the field) stay 0; a
nucleus without stain around it is a cell of its own pixels only. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu, threshold_triangle
from skimage.segmentation import watershed

CellStain = Literal["cytoplasm", "membrane"]


@dataclass(frozen=True)
class CellSegmentation:
    """Cells, their nuclei and their cytoplasm as instance labels of one field ``(Y, X)``.

    Attributes
    ----------
    cells : numpy.ndarray
        int32 cell labels (0 = background); cell k contains nucleus k (same ids as ``nuclei``).
    nuclei : numpy.ndarray
        int32 nucleus labels, as given.
    cytoplasm : numpy.ndarray
        int32: ``cells`` with the nucleus pixels set to 0 (label k = cytoplasm of cell k).
    """

    cells: np.ndarray
    nuclei: np.ndarray
    cytoplasm: np.ndarray

    @property
    def count(self) -> int:
        """Number of cells (= number of distinct nucleus ids)."""
        ids = np.unique(self.nuclei)
        return int(np.count_nonzero(ids))

    def areas_px(self) -> dict[int, tuple[int, int]]:
        """Per label k: (cell area, nucleus area) in pixels."""
        cells = np.bincount(self.cells.ravel())
        nuclei = np.bincount(self.nuclei.ravel(), minlength=len(cells))
        return {int(k): (int(cells[k]), int(nuclei[k])) for k in np.flatnonzero(nuclei[1:]) + 1}


def segment_cells(stain: np.ndarray, nuclei: np.ndarray, kind: CellStain = "cytoplasm", pixel_size_um: float = 1.0,
                  smooth_um: float = 1.0, threshold: float | None = None,
                  max_distance_um: float | None = None) -> CellSegmentation:
    """Cell instances in a 2D cytoplasm or membrane stain ``(Y, X)``, grown from the nuclei by a seeded watershed.

    Parameters
    ----------
    stain : numpy.ndarray
        2D image: a cytoplasm stain (bright over the whole cell: ER, RNA, CellMask, a virtual stain) or a
        membrane stain (bright cell outlines: DiI, WGA, a virtual membrane stain).
    nuclei : numpy.ndarray
        2D integer nucleus labels of the same field (0 = background), e.g. from
        :func:`~virtualstain.analysis.segment_nuclei`; ids need not be consecutive.
    kind : {"cytoplasm", "membrane"}
        What the stain marks (see the module docstring for the elevation each uses).
    pixel_size_um : float
        µm per pixel; the other lengths are in µm (with the default 1.0 they are pixels).
    smooth_um : float
        Gaussian σ of the smoothing before thresholding and flooding.
    threshold : float, optional
        Foreground (cytoplasm) or outline (membrane) intensity threshold of the smoothed stain; default
        :func:`default_threshold` (Otsu for a membrane stain, the lower of Otsu and triangle for a cytoplasm stain).
    max_distance_um : float, optional
        A cell extends at most this far from its nucleus (µm); default unlimited.

    Returns
    -------
    CellSegmentation
        Cells with the ids of their nuclei, the nuclei, and the cytoplasm; for a constant stain the cells
        are the nuclei.

    Raises
    ------
    ValueError
        Images not 2D or of different shapes, non-integer or negative nucleus labels, an unknown ``kind``,
        or a pixel size or length that is not a finite positive number.
    """
    img = np.asarray(stain, np.float64)
    labels = np.asarray(nuclei)
    if img.ndim != 2:
        raise ValueError(f"segment_cells expects a 2D stain image (Y, X), got shape {img.shape}")
    if labels.shape != img.shape:
        raise ValueError(f"segment_cells: nuclei shape {labels.shape} differs from stain shape {img.shape}; "
                         "give the nucleus labels of the same field")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"segment_cells expects integer nucleus labels, got {labels.dtype}; label them first "
                         "(e.g. with segment_nuclei)")
    if labels.size and labels.min() < 0:
        raise ValueError("segment_cells: nucleus labels must be ≥ 0 (0 = background)")
    if kind not in ("cytoplasm", "membrane"):
        raise ValueError(f"segment_cells: kind {kind!r}; use 'cytoplasm' or 'membrane'")
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"segment_cells: pixel_size_um {pixel_size_um}; give a finite number > 0 (µm)")
    if not (np.isfinite(smooth_um) and smooth_um >= 0):
        raise ValueError(f"segment_cells: smooth_um {smooth_um}; give a finite number ≥ 0 (µm)")
    if max_distance_um is not None and not (np.isfinite(max_distance_um) and max_distance_um >= 0):
        raise ValueError(f"segment_cells: max_distance_um {max_distance_um}; give a finite number ≥ 0 (µm) or None")
    markers = labels.astype(np.int32)
    inside = markers > 0
    if not inside.any():
        return _result(np.zeros_like(markers), markers)
    smooth = ndi.gaussian_filter(img, smooth_um / pixel_size_um)
    if smooth.min() == smooth.max():
        return _result(markers.copy(), markers)
    level = default_threshold(smooth, kind) if threshold is None else threshold
    foreground = smooth > level
    if kind == "membrane":
        mask = filled_outlines(foreground) | inside
        elevation = smooth
    else:
        mask = foreground | inside
        elevation = cytoplasm_elevation(smooth)
    if max_distance_um is not None:
        mask &= ndi.distance_transform_edt(~inside) * pixel_size_um <= max_distance_um
    cells = watershed(elevation, markers, mask=mask).astype(np.int32)
    return _result(cells, markers)


def default_threshold(smooth: np.ndarray, kind: CellStain) -> float:
    """Foreground threshold of a smoothed stain: Otsu for a membrane stain (bright outlines vs the rest); for a
    cytoplasm stain the lower of Otsu and the triangle method.

    A cytoplasm stain's histogram is one background peak with a long tail (dim cell edges far below the bright
    perinuclear stain): Otsu splits the tail and keeps only the bright part (12 % of the BBBC022 ER crop, the
    cells cover ≈ 33 %), the triangle method cuts at the foot of the background peak (33 %). When the cells
    fill most of the field the tallest peak is theirs and the triangle cut falls inside it; Otsu is lower then.
    """
    otsu = float(threshold_otsu(smooth))
    return otsu if kind == "membrane" else min(otsu, float(threshold_triangle(smooth)))


def filled_outlines(outlines: np.ndarray) -> np.ndarray:
    """Cells enclosed by a binary membrane mask: the outlines with their insides filled, cut back to the centre
    line of the outermost membrane (its pixels nearer the background than the cells' insides are dropped)."""
    filled = ndi.binary_fill_holes(outlines)
    insides = filled & ~outlines
    if not insides.any():
        return filled
    return filled & (ndi.distance_transform_edt(~insides) <= ndi.distance_transform_edt(filled))


def cytoplasm_elevation(smooth: np.ndarray) -> np.ndarray:
    """The landscape nuclei flood in a smoothed cytoplasm stain: the inverted intensity (dim gaps are ridges)."""
    return -smooth


def _result(cells: np.ndarray, nuclei: np.ndarray) -> CellSegmentation:
    cells[nuclei > 0] = nuclei[nuclei > 0]  # markers keep their ids; also where the mask cut a nucleus
    cytoplasm = np.where(nuclei > 0, 0, cells).astype(np.int32)
    return CellSegmentation(cells=cells, nuclei=nuclei, cytoplasm=cytoplasm)
