"""Per-object features and their agreement between a real and a virtual stain (VirFluoNet's comparison).

Features per object (areas in µm², lengths in µm, intensities in the image's units):

* shape — ``area``, ``perimeter``, ``eccentricity``, ``solidity``, ``major_axis_um``, ``minor_axis_um``;
* intensity — ``mean_intensity``, ``std_intensity``, ``integrated_intensity`` (sum over the object's pixels);
* texture — Haralick ``contrast``, ``homogeneity``, ``correlation`` and ``energy`` of the grey-level
  co-occurrence matrix (distance 1 px, four directions averaged, 32 grey levels spanning the image's
  1st–99th percentile) computed inside the object (pixels outside it are excluded from the counts).

:func:`feature_agreement` segments both images, matches objects one to one (IoU ≥ 0.5) and gives, for
each feature, Pearson r across the matched objects between the real and the virtual measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential

from ..metrics.correlation import pearson_r
from .matching import MatchResult, match_objects
from .segmentation import segment_nuclei

FEATURES = ("area", "perimeter", "eccentricity", "solidity", "major_axis_um", "minor_axis_um", "mean_intensity",
            "std_intensity", "integrated_intensity", "contrast", "homogeneity", "correlation", "energy")
TEXTURE = ("contrast", "homogeneity", "correlation", "energy")
_LEVELS = 32


def _quantise(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99])
    scale = (_LEVELS - 1) / (hi - lo) if hi > lo else 0.0
    return np.clip(np.round((image - lo) * scale), 0, _LEVELS - 1).astype(np.uint8) + 1  # 0 marks "outside"


def object_features(labels: np.ndarray, image: np.ndarray, pixel_size_um: float = 1.0) -> dict[str, np.ndarray]:
    """Feature table of the objects in ``labels`` measured on ``image`` (both 2D ``(Y, X)``).

    Returns
    -------
    dict of str to numpy.ndarray
        ``label`` and each name in :data:`FEATURES`, one entry per object in increasing label order.
    """
    labels = np.asarray(labels)
    image = np.asarray(image, np.float64)
    if labels.shape != image.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and image {image.shape} must be the same 2D shape")
    grey = _quantise(image)
    px, px2 = pixel_size_um, pixel_size_um ** 2
    table: dict[str, list[float]] = {name: [] for name in ("label", *FEATURES)}
    for region in regionprops(labels, intensity_image=image):
        values = region.image_intensity[region.image]
        table["label"].append(region.label)
        table["area"].append(region.area * px2)
        table["perimeter"].append(region.perimeter * px)
        table["eccentricity"].append(region.eccentricity)
        table["solidity"].append(region.solidity)
        table["major_axis_um"].append(region.axis_major_length * px)
        table["minor_axis_um"].append(region.axis_minor_length * px)
        table["mean_intensity"].append(values.mean())
        table["std_intensity"].append(values.std())
        table["integrated_intensity"].append(values.sum())
        patch = np.where(region.image, grey[region.slice], 0)
        glcm = graycomatrix(patch, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=_LEVELS + 1)
        glcm = glcm[1:, 1:].astype(np.float64)  # drop pairs that touch the outside
        for name in TEXTURE:
            table[name].append(float(graycoprops(glcm, name).mean()) if glcm.sum() else float("nan"))
    return {k: np.asarray(v, np.int64 if k == "label" else np.float64) for k, v in table.items()}


@dataclass
class FeatureAgreement:
    """Real-vs-virtual feature comparison over matched objects.

    ``pearson_r[name]`` is NaN where the feature is constant over the matched objects or fewer than three
    pairs exist; ``real`` and ``virtual`` hold the matched rows of both feature tables, in pair order.
    """

    n_real: int
    n_virtual: int
    n_pairs: int
    pearson_r: dict[str, float]
    real: dict[str, np.ndarray] = field(default_factory=dict)
    virtual: dict[str, np.ndarray] = field(default_factory=dict)


def feature_agreement(real: np.ndarray, virtual: np.ndarray, pixel_size_um: float = 1.0,
                      real_labels: np.ndarray | None = None, virtual_labels: np.ndarray | None = None,
                      match: MatchResult | None = None, **segment_kwargs) -> FeatureAgreement:
    """Segment (unless labels are given), match at IoU ≥ 0.5 (unless given), correlate each feature across pairs.

    ``segment_kwargs`` go to :func:`~virtualstain.analysis.segment_nuclei` (µm units). A given ``match``
    must come from ``match_objects(virtual_labels, real_labels)``.
    """
    if real.shape != virtual.shape:
        raise ValueError(f"real {real.shape} and virtual {virtual.shape} images differ in shape")
    if real_labels is None:
        real_labels = segment_nuclei(real, pixel_size_um=pixel_size_um, **segment_kwargs)
    if virtual_labels is None:
        virtual_labels = segment_nuclei(virtual, pixel_size_um=pixel_size_um, **segment_kwargs)
    if match is None:
        match = match_objects(virtual_labels, real_labels, pixel_size_um=pixel_size_um)
    real_seq = relabel_sequential(np.asarray(real_labels, np.int64))[0]
    virtual_seq = relabel_sequential(np.asarray(virtual_labels, np.int64))[0]
    t_real = object_features(real_seq, real, pixel_size_um)
    t_virtual = object_features(virtual_seq, virtual, pixel_size_um)
    rows_v = np.array([v - 1 for v, _, _ in match.pairs], np.int64)
    rows_r = np.array([r - 1 for _, r, _ in match.pairs], np.int64)
    real_rows = {k: v[rows_r] for k, v in t_real.items()}
    virtual_rows = {k: v[rows_v] for k, v in t_virtual.items()}
    return FeatureAgreement(n_real=match.n_true, n_virtual=match.n_predicted, n_pairs=match.true_positives,
                            pearson_r=feature_correlations(real_rows, virtual_rows), real=real_rows,
                            virtual=virtual_rows)


def feature_correlations(real: dict[str, np.ndarray], virtual: dict[str, np.ndarray]) -> dict[str, float]:
    """Pearson r of each feature between matched real and virtual rows (NaN with fewer than 3 finite pairs)."""
    r = {}
    for name in FEATURES:
        a, b = np.asarray(real[name], np.float64), np.asarray(virtual[name], np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        r[name] = pearson_r(b[ok], a[ok]) if ok.sum() >= 3 else float("nan")
    return r
