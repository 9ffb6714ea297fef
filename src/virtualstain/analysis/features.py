"""Per-object features and their agreement between a real and a virtual stain (VirFluoNet's comparison).

Features per object (areas in µm², lengths in µm, intensities in the image's units), in the spirit of the
CellProfiler pipeline VirFluoNet compares (its Figs. 7–8: correlation, granularity, intensity, radial
distribution, size & shape, texture, over nuclei, cells and cytoplasm):

* shape — ``area``, ``perimeter``, ``eccentricity``, ``solidity``, ``major_axis_um``, ``minor_axis_um``;
* intensity — ``mean_intensity``, ``std_intensity``, ``integrated_intensity`` (sum over the object's pixels);
* texture — Haralick ``contrast``, ``homogeneity``, ``correlation`` and ``energy`` of the grey-level
  co-occurrence matrix (distance 1 px, four directions averaged, 32 grey levels spanning the image's
  1st–99th percentile) computed inside the object (pixels outside it are excluded from the counts);
* cytoplasm — ``cytoplasm_mean_intensity`` and ``cytoplasm_integrated_intensity`` (sum) over the ring
  around the object: :func:`skimage.segmentation.expand_labels` grows every object by w px into the
  background (a pixel goes to the nearest object, so neighbours split the space between them), minus the
  object itself; w = :data:`CYTOPLASM_RADII` × the median equivalent radius √(area/π) of the objects
  (in :func:`feature_agreement`, of the real ones, so both images get the same ring width). NaN mean
  where an object has no ring pixels;
* granularity — ``granularity_Spx`` for S in :data:`GRANULARITY_SIZES_PX`: CellProfiler's
  MeasureGranularity spectrum at a few sizes. On the object's signal x (the image minus its 1st
  percentile, clipped at 0, zero outside the object), the opening by reconstruction γ_S(x) = the grey
  reconstruction by dilation under x of x eroded by a disc of radius S; granularity_S =
  (Σ γ_{S⁻}(x) − Σ γ_S(x)) / Σ x, with S⁻ the previous size (γ of the first size's predecessor is x
  itself): the fraction of the object's signal in structures that survive S⁻ but not S. Departures
  from CellProfiler: no subsampling, a disc of each size instead of repeated 1-px erosions, and the
  1st-percentile offset instead of its background opening;
* radial distribution — ``radial_fraction_kofN`` (N = :data:`RADIAL_BINS`), CellProfiler's
  MeasureObjectIntensityDistribution FracAtD: from the object's centre (the pixel farthest from its
  edge) each pixel's normalised radius is ρ / (ρ + e), ρ its distance to the centre and e its Euclidean
  distance to the nearest pixel outside the object; ring k holds radii in [(k−1)/N, k/N); the feature
  is the fraction of the object's signal x in ring k (they sum to 1).

:func:`feature_agreement` segments both images, matches objects one to one (IoU ≥ 0.5) and gives, for
each feature, Pearson r across the matched objects between the real and the virtual measurement.
Pooled over images (``evaluate``'s summary) and per image, these are the report's agreement table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops
from skimage.morphology import disk, reconstruction
from skimage.segmentation import expand_labels, relabel_sequential

from ..metrics.correlation import pearson_r
from .matching import MatchResult, match_objects
from .segmentation import segment_nuclei

SHAPE = ("area", "perimeter", "eccentricity", "solidity", "major_axis_um", "minor_axis_um")
INTENSITY = ("mean_intensity", "std_intensity", "integrated_intensity")
TEXTURE = ("contrast", "homogeneity", "correlation", "energy")
CYTOPLASM = ("cytoplasm_mean_intensity", "cytoplasm_integrated_intensity")
#: Disc radii (px) of the granularity spectrum.
GRANULARITY_SIZES_PX = (1, 2, 4, 8)
GRANULARITY = tuple(f"granularity_{size}px" for size in GRANULARITY_SIZES_PX)
#: Rings of the radial intensity distribution, centre to edge.
RADIAL_BINS = 4
RADIAL = tuple(f"radial_fraction_{k}of{RADIAL_BINS}" for k in range(1, RADIAL_BINS + 1))
#: The features by group, in the order of :data:`FEATURES`.
FEATURE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shape", SHAPE), ("intensity", INTENSITY), ("texture", TEXTURE), ("cytoplasm", CYTOPLASM),
    ("granularity", GRANULARITY), ("radial distribution", RADIAL))
FEATURES = tuple(name for _, names in FEATURE_GROUPS for name in names)
#: Width of the cytoplasm ring, in median nucleus (object) radii.
CYTOPLASM_RADII = 2.0
_LEVELS = 32
_SIGNAL_PERCENTILE = 1.0


def _quantise(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99])
    scale = (_LEVELS - 1) / (hi - lo) if hi > lo else 0.0
    return np.clip(np.round((image - lo) * scale), 0, _LEVELS - 1).astype(np.uint8) + 1  # 0 marks "outside"


def _signal(image: np.ndarray) -> np.ndarray:
    """The image minus its 1st percentile, clipped at 0: the signal that granularity and radial fractions share out."""
    return np.clip(image - np.percentile(image, _SIGNAL_PERCENTILE), 0, None)


def cytoplasm_width_px(labels: np.ndarray) -> float:
    """Ring width w = :data:`CYTOPLASM_RADII` × the median equivalent radius √(area/π) of the objects, px (0 if none)."""
    areas = np.bincount(np.asarray(labels, np.int64).ravel())[1:]
    areas = areas[areas > 0]
    return float(CYTOPLASM_RADII * np.median(np.sqrt(areas / np.pi))) if areas.size else 0.0


def cytoplasm_rings(labels: np.ndarray, width_px: float) -> np.ndarray:
    """Label image of the ring around each object: ``labels`` grown by ``width_px`` into the background, minus the objects.

    Parameters
    ----------
    labels : numpy.ndarray
        (Y, X) instance labels, 0 background.
    width_px : float
        How far each object grows, px (Euclidean); where two objects' rings meet, each pixel goes to the nearer.

    Returns
    -------
    numpy.ndarray
        (Y, X), the ring of object k labelled k, everything else 0.
    """
    labels = np.asarray(labels)
    return np.where(labels == 0, expand_labels(labels, distance=width_px), 0)


def granularity_spectrum(signal: np.ndarray, mask: np.ndarray, sizes: tuple[int, ...] = GRANULARITY_SIZES_PX) -> np.ndarray:
    """Fraction of an object's signal removed at each size by openings by reconstruction (CellProfiler's granularity).

    Parameters
    ----------
    signal : numpy.ndarray
        (Y, X) non-negative signal around the object (e.g. its bounding box).
    mask : numpy.ndarray of bool
        (Y, X) the object's pixels; signal outside it is ignored.
    sizes : tuple of int
        Increasing disc radii S, px.

    Returns
    -------
    numpy.ndarray
        One value per size: (Σ γ_{S⁻}(x) − Σ γ_S(x)) / Σ x with x the signal inside the object (NaN if Σ x = 0);
        γ_S is erosion by a disc of radius S, then grey reconstruction by dilation under x.
    """
    x = np.where(mask, signal, 0.0)
    total = float(x.sum())
    if total <= 0:
        return np.full(len(sizes), np.nan)
    kept, out = total, []
    for size in sizes:
        if kept == 0:  # nothing left to remove
            out.append(0.0)
            continue
        seed = ndi.grey_erosion(x, footprint=disk(size), mode="constant", cval=0.0)
        now = float(reconstruction(seed, x).sum()) if seed.any() else 0.0  # no seed: the object is gone
        out.append((kept - now) / total)
        kept = now
    return np.asarray(out)


def radial_fractions(signal: np.ndarray, mask: np.ndarray, bins: int = RADIAL_BINS) -> np.ndarray:
    """Fraction of an object's signal in ``bins`` rings from its centre to its edge (CellProfiler's FracAtD).

    Parameters
    ----------
    signal : numpy.ndarray
        (Y, X) non-negative signal around the object.
    mask : numpy.ndarray of bool
        (Y, X) the object's pixels.
    bins : int
        Rings, innermost first.

    Returns
    -------
    numpy.ndarray
        (bins,) Σ of the signal in ring k / Σ over the object (NaN if that is 0). Ring of a pixel:
        ⌊bins · ρ / (ρ + e)⌋ with ρ its distance to the centre (the pixel farthest from the edge, the first
        one on ties) and e its distance to the nearest pixel outside the object (px).
    """
    edge = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    centre = np.unravel_index(int(np.argmax(edge)), edge.shape)
    yy, xx = np.indices(mask.shape)
    rho = np.hypot(yy - centre[0], xx - centre[1])[mask]
    ring = np.minimum((bins * rho / (rho + edge[mask])).astype(np.int64), bins - 1)
    values = signal[mask]
    total = float(values.sum())
    if total <= 0:
        return np.full(bins, np.nan)
    return np.bincount(ring, weights=values, minlength=bins) / total


def _ring_intensities(rings: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (NaN without pixels) and sum of ``image`` over each ring, indexed by label (0 … max label)."""
    counts = np.bincount(rings.ravel())
    sums = np.bincount(rings.ravel(), weights=image.ravel())
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0), sums


def _texture(mask: np.ndarray, grey: np.ndarray) -> list[float]:
    """Haralick features of the grey levels inside ``mask`` (NaN without pixel pairs inside it)."""
    patch = np.where(mask, grey, 0)
    glcm = graycomatrix(patch, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=_LEVELS + 1)
    glcm = glcm[1:, 1:].astype(np.float64)  # drop pairs that touch the outside
    return [float(graycoprops(glcm, name).mean()) if glcm.sum() else float("nan") for name in TEXTURE]


def object_features(labels: np.ndarray, image: np.ndarray, pixel_size_um: float = 1.0,
                    ring_px: float | None = None) -> dict[str, np.ndarray]:
    """Feature table of the objects in ``labels`` measured on ``image`` (both 2D ``(Y, X)``).

    Parameters
    ----------
    labels : numpy.ndarray
        (Y, X) instance labels, 0 background.
    image : numpy.ndarray
        (Y, X) intensities.
    pixel_size_um : float
        µm per pixel, for areas and lengths.
    ring_px : float, optional
        Width of the cytoplasm ring, px; default :func:`cytoplasm_width_px` of ``labels``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``label`` and each name in :data:`FEATURES`, one entry per object in increasing label order.
    """
    labels = np.asarray(labels)
    image = np.asarray(image, np.float64)
    if labels.shape != image.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and image {image.shape} must be the same 2D shape")
    grey, signal = _quantise(image), _signal(image)
    rings = cytoplasm_rings(labels, cytoplasm_width_px(labels) if ring_px is None else ring_px)
    ring_mean, ring_sum = _ring_intensities(rings, image)
    px, px2 = pixel_size_um, pixel_size_um ** 2
    rows = []
    for region in regionprops(labels, intensity_image=image):
        k, mask, values = region.label, region.image, region.image_intensity[region.image]
        row = {"label": k, "area": region.area * px2, "perimeter": region.perimeter * px,
               "eccentricity": region.eccentricity, "solidity": region.solidity,
               "major_axis_um": region.axis_major_length * px, "minor_axis_um": region.axis_minor_length * px,
               "mean_intensity": values.mean(), "std_intensity": values.std(), "integrated_intensity": values.sum(),
               "cytoplasm_mean_intensity": ring_mean[k] if k < ring_mean.size else np.nan,
               "cytoplasm_integrated_intensity": ring_sum[k] if k < ring_sum.size else 0.0}
        row.update(zip(TEXTURE, _texture(mask, grey[region.slice])))
        row.update(zip(GRANULARITY, granularity_spectrum(signal[region.slice], mask)))
        row.update(zip(RADIAL, radial_fractions(signal[region.slice], mask)))
        rows.append(row)
    return {k: np.asarray([row[k] for row in rows], np.int64 if k == "label" else np.float64)
            for k in ("label", *FEATURES)}


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

    Both images' cytoplasm rings have the width :func:`cytoplasm_width_px` gives for the real objects.
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
    ring_px = cytoplasm_width_px(real_seq)  # one ring width for both images, from the real objects
    t_real = object_features(real_seq, real, pixel_size_um, ring_px)
    t_virtual = object_features(virtual_seq, virtual, pixel_size_um, ring_px)
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
