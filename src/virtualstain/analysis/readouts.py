"""Object readouts of a virtual stain against the real one: segment both the same way, match, summarise.

``nuclei`` channels are segmented with :func:`~virtualstain.analysis.segment_nuclei`; ``cells`` channels
(junction / membrane stains) with :func:`~virtualstain.analysis.segment_cells_from_junctions`. Volumes
``(Z, Y, X)`` are read out on their maximum projection along Z. The per-object features of
:mod:`virtualstain.analysis.features` are measured on every matched pair. Which readout a channel gets is decided by
its name (:func:`readout_for`) unless the caller says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cells import segment_cells_from_junctions
from .features import FeatureAgreement, feature_agreement
from .matching import MatchResult, match_objects
from .nucleus_size import estimate_nucleus_diameter, segmentation_lengths
from .segmentation import segment_nuclei

READOUTS = ("nuclei", "cells", "none")
_NUCLEI_NAMES = re.compile(r"nuc|dna|dapi|hoechst|h2b|draq|sytox|syto|nls", re.IGNORECASE)
_CELL_NAMES = re.compile(r"membrane|junction|zo-?1|cadherin|cdh1|tight", re.IGNORECASE)


def readout_for(channel_name: str) -> str:
    """``"nuclei"`` for DNA stains (DAPI, Hoechst, ...), ``"cells"`` for junction stains, else ``"none"``."""
    if _NUCLEI_NAMES.search(channel_name):
        return "nuclei"
    if _CELL_NAMES.search(channel_name):
        return "cells"
    return "none"


@dataclass
class ObjectReadout:
    """Objects of one channel of one image: labels of both, their one-to-one matching (IoU ≥ 0.5), and the
    per-object features of the matched pairs, each measured on its own image. With another segmenter than
    the classical one, ``classical_agreement_f1`` is the F1 (IoU 0.5) between its target labels and the
    classical method's on the same target: where the two rulers disagree."""

    kind: str
    target_labels: np.ndarray
    prediction_labels: np.ndarray
    match: MatchResult
    features: FeatureAgreement
    classical_agreement_f1: float = float("nan")

    def row(self) -> dict[str, float]:
        """The per-image columns: counts, count error, precision / recall / F1, median displacement and area ratio."""
        m = self.match
        area_t = m.area_true_um2[[t - 1 for _, t, _ in m.pairs]]
        area_p = m.area_predicted_um2[[p - 1 for p, _, _ in m.pairs]]
        return {
            "count_target": m.n_true, "count_prediction": m.n_predicted, "count_error": m.count_error,
            "precision": m.precision, "recall": m.recall, "f1": m.f1,
            "displacement_median_um": float(np.median(m.displacement_um)) if m.pairs else float("nan"),
            "area_ratio_median": float(np.median(area_p / area_t)) if m.pairs else float("nan"),
        }


def _plane(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float64)
    return image.max(axis=0) if image.ndim == 3 else image


#: A nuclei segmenter other than the classical one: ``(image (Y, X), typical nucleus diameter px) → labels``.
NucleiSegmenter = Callable[[np.ndarray, float], np.ndarray]


def object_readout(prediction: np.ndarray, target: np.ndarray, kind: str, pixel_size_um: float | None = 1.0,
                   nuclei_segmenter: NucleiSegmenter | None = None, **segment_kwargs) -> ObjectReadout:
    """Segment ``prediction`` and ``target`` (2D, or 3D read on the Z max projection) and match the objects.

    Parameters
    ----------
    kind : {"nuclei", "cells"}
        Which segmentation to use.
    pixel_size_um : float or None
        µm per pixel, for areas (µm²) and displacements (µm). None (unknown): nuclei lengths are scaled to
        the target's typical nucleus diameter (:func:`~virtualstain.analysis.segmentation_lengths`), the same
        for prediction and target, and areas are in px².
    nuclei_segmenter : callable, optional
        Segments ``nuclei`` channels instead of the classical method (e.g. the learned segmenter); it gets
        the typical nucleus diameter estimated on the *target*, so prediction and target are segmented at
        one scale.
    segment_kwargs
        Passed to the classical segmentation function (lengths in µm); they override the scaled lengths.
    """
    if kind not in ("nuclei", "cells"):
        raise ValueError(f"readout kind must be 'nuclei' or 'cells', got {kind!r}")
    segment = segment_nuclei if kind == "nuclei" else segment_cells_from_junctions
    t_plane, p_plane = _plane(target), _plane(prediction)
    if kind == "nuclei":
        segment_kwargs = {**segmentation_lengths(t_plane, pixel_size_um).kwargs(), **segment_kwargs}
    else:
        segment_kwargs = {"pixel_size_um": pixel_size_um or 1.0, **segment_kwargs}
    px = segment_kwargs["pixel_size_um"]
    agreement = float("nan")
    if kind == "nuclei" and nuclei_segmenter is not None:
        diameter = estimate_nucleus_diameter(t_plane).diameter_px
        t_labels, p_labels = nuclei_segmenter(t_plane, diameter), nuclei_segmenter(p_plane, diameter)
        agreement = match_objects(t_labels, segment(t_plane, **segment_kwargs)).f1
    else:
        t_labels, p_labels = segment(t_plane, **segment_kwargs), segment(p_plane, **segment_kwargs)
    match = match_objects(p_labels, t_labels, pixel_size_um=px)
    features = feature_agreement(t_plane, p_plane, px, real_labels=t_labels, virtual_labels=p_labels, match=match)
    return ObjectReadout(kind, t_labels, p_labels, match, features, agreement)
