"""Object readouts of a virtual stain against the real one: segment both the same way, match, summarise.

``nuclei`` channels are segmented with :func:`~virtualstain.analysis.segment_nuclei`; ``cells`` channels
(junction / membrane stains) with :func:`~virtualstain.analysis.segment_cells_from_junctions`. Volumes
``(Z, Y, X)`` are read out on their maximum projection along Z. The per-object features of
:mod:`virtualstain.analysis.features` are measured on every matched pair. Which readout a channel gets is decided by
its name (:func:`readout_for`) unless the caller says.

The judge judges itself: with a second nuclei segmenter, the real stain of every ``nuclei`` channel is also
segmented by it (the classical method when another one judges, or the segmenter given as ``second_opinion``
when the classical one judges), and :class:`SegmenterComparison` records where the two disagree: objects of
either method without a partner of IoU ≥ 0.5 in the other (:func:`~virtualstain.analysis.match_objects`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage.segmentation import relabel_sequential

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


@dataclass(frozen=True)
class SegmenterComparison:
    """Two nuclei segmenters on one real stain: the judge's objects and another method's, matched one to one.

    Attributes
    ----------
    judge, other : numpy.ndarray
        Instance labels ``(Y, X)`` of the judging segmenter and of the other one, relabelled 1…n in the order of
        their labels, so that ``match.pairs`` refers to them.
    match : MatchResult
        ``match_objects(other, judge)``: ``pairs`` are (other label, judge label, IoU) with IoU ≥ 0.5; ``f1`` is
        their agreement (symmetric in the two methods).
    """

    judge: np.ndarray
    other: np.ndarray
    match: MatchResult

    @classmethod
    def of(cls, judge: np.ndarray, other: np.ndarray) -> SegmenterComparison:
        """Relabel both label images sequentially and match them (IoU ≥ 0.5)."""
        judge = relabel_sequential(np.asarray(judge, np.int64))[0].astype(np.int32)
        other = relabel_sequential(np.asarray(other, np.int64))[0].astype(np.int32)
        return cls(judge, other, match_objects(other, judge))

    def unmatched(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels of the judge's objects without a match in the other method, and of the other's without one in
        the judge's (sorted int arrays)."""
        judge_ids = np.arange(1, self.match.n_true + 1)
        other_ids = np.arange(1, self.match.n_predicted + 1)
        matched_other = [o for o, _, _ in self.match.pairs]
        matched_judge = [j for _, j, _ in self.match.pairs]
        return np.setdiff1d(judge_ids, matched_judge), np.setdiff1d(other_ids, matched_other)

    def unmatched_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks ``(Y, X)`` of the objects :meth:`unmatched` names: the judge's, then the other's."""
        only_judge, only_other = self.unmatched()
        return np.isin(self.judge, only_judge), np.isin(self.other, only_other)


@dataclass
class ObjectReadout:
    """Objects of one channel of one image: labels of both, their one-to-one matching (IoU ≥ 0.5), and the
    per-object features of the matched pairs, each measured on its own image. With a second nuclei segmenter,
    ``comparison`` holds its objects on the same target beside the judge's: where the two rulers disagree."""

    kind: str
    target_labels: np.ndarray
    prediction_labels: np.ndarray
    match: MatchResult
    features: FeatureAgreement
    comparison: SegmenterComparison | None = None

    @property
    def agreement_f1(self) -> float:
        """F1 (IoU 0.5) between the judge's and the second segmenter's objects in the target; NaN without one."""
        return self.comparison.match.f1 if self.comparison is not None else float("nan")

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
                   nuclei_segmenter: NucleiSegmenter | None = None, second_opinion: NucleiSegmenter | None = None,
                   **segment_kwargs) -> ObjectReadout:
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
        one scale. The classical method then segments the target too, for :attr:`ObjectReadout.comparison`.
    second_opinion : callable, optional
        With the classical method judging: a segmenter run on the target only (with the target's typical
        diameter), for :attr:`ObjectReadout.comparison`. Ignored when ``nuclei_segmenter`` is given.
    segment_kwargs
        Passed to the classical segmentation function (lengths in µm); they override the scaled lengths.
    """
    if kind not in ("nuclei", "cells"):
        raise ValueError(f"readout kind must be 'nuclei' or 'cells', got {kind!r}")
    t_plane, p_plane = _plane(target), _plane(prediction)
    comparison = None
    if kind == "nuclei":
        segment_kwargs = {**segmentation_lengths(t_plane, pixel_size_um).kwargs(), **segment_kwargs}
        t_labels, p_labels, other = _nuclei_labels(t_plane, p_plane, segment_kwargs, nuclei_segmenter, second_opinion)
        comparison = SegmenterComparison.of(t_labels, other) if other is not None else None
    else:
        segment_kwargs = {"pixel_size_um": pixel_size_um or 1.0, **segment_kwargs}
        t_labels = segment_cells_from_junctions(t_plane, **segment_kwargs)
        p_labels = segment_cells_from_junctions(p_plane, **segment_kwargs)
    px = segment_kwargs["pixel_size_um"]
    match = match_objects(p_labels, t_labels, pixel_size_um=px)
    features = feature_agreement(t_plane, p_plane, px, real_labels=t_labels, virtual_labels=p_labels, match=match)
    return ObjectReadout(kind, t_labels, p_labels, match, features, comparison)


def _nuclei_labels(target: np.ndarray, prediction: np.ndarray, classical_kwargs: dict,
                   judge: NucleiSegmenter | None,
                   second_opinion: NucleiSegmenter | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The judge's labels of target and prediction, and the other segmenter's of the target (None: no second
    segmenter): the classical method when ``judge`` is given, else ``second_opinion``. Each segmenter runs
    once per image; the non-classical ones get the target's typical nucleus diameter."""
    if judge is None:
        t_labels, p_labels = segment_nuclei(target, **classical_kwargs), segment_nuclei(prediction, **classical_kwargs)
        if second_opinion is None:
            return t_labels, p_labels, None
        return t_labels, p_labels, second_opinion(target, estimate_nucleus_diameter(target).diameter_px)
    diameter = estimate_nucleus_diameter(target).diameter_px
    return judge(target, diameter), judge(prediction, diameter), segment_nuclei(target, **classical_kwargs)
