"""One-to-one matching of predicted to ground-truth objects, and the readouts that follow.

IoU(a, b) = |a ∩ b| / |a ∪ b| for every overlapping pair; the one-to-one assignment maximising the
total IoU (Hungarian algorithm) is kept where IoU ≥ ``iou_threshold``. Then TP = matched pairs,
precision = TP / #predicted, recall = TP / #true, F1 = 2·TP / (#predicted + #true), count error
= (#predicted − #true) / #true, and centroid displacement = distance between matched centroids (µm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import relabel_sequential


@dataclass
class MatchResult:
    """Matching outcome; areas in µm², displacements in µm."""

    n_true: int
    n_predicted: int
    true_positives: int
    precision: float
    recall: float
    f1: float
    count_error: float
    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    displacement_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    area_true_um2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    area_predicted_um2: np.ndarray = field(default_factory=lambda: np.zeros(0))


def iou_matrix(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """IoU between every predicted object (rows, label 1…) and true object (columns, label 1…)."""
    p, t = np.asarray(predicted).ravel(), np.asarray(true).ravel()
    n_p, n_t = int(p.max(initial=0)), int(t.max(initial=0))
    overlap = np.bincount(p * (n_t + 1) + t, minlength=(n_p + 1) * (n_t + 1)).reshape(n_p + 1, n_t + 1)
    area_p, area_t = overlap.sum(1), overlap.sum(0)
    inter = overlap[1:, 1:].astype(np.float64)
    union = area_p[1:, None] + area_t[None, 1:] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_objects(predicted: np.ndarray, true: np.ndarray, iou_threshold: float = 0.5,
                  pixel_size_um: float = 1.0) -> MatchResult:
    """Match instance-label images one to one by IoU and summarise (see the module docstring).

    Labels need not be consecutive; ``pairs`` refer to the labels after sequential relabelling.
    """
    if predicted.shape != true.shape:
        raise ValueError(f"label images differ in shape: {predicted.shape} vs {true.shape}")
    predicted = relabel_sequential(np.asarray(predicted, np.int64))[0]
    true = relabel_sequential(np.asarray(true, np.int64))[0]
    iou = iou_matrix(predicted, true)
    n_p, n_t = iou.shape
    pairs: list[tuple[int, int, float]] = []
    if n_p and n_t:
        rows, cols = linear_sum_assignment(-iou)
        pairs = [(int(r) + 1, int(c) + 1, float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]
    tp = len(pairs)
    px2 = pixel_size_um ** 2
    disp = np.zeros(0)
    if pairs:
        cp = np.array(ndi.center_of_mass(np.ones(predicted.shape), predicted, [a for a, _, _ in pairs]))
        ct = np.array(ndi.center_of_mass(np.ones(true.shape), true, [b for _, b, _ in pairs]))
        disp = np.linalg.norm(cp - ct, axis=1) * pixel_size_um
    return MatchResult(
        n_true=n_t, n_predicted=n_p, true_positives=tp,
        precision=tp / n_p if n_p else float("nan"), recall=tp / n_t if n_t else float("nan"),
        f1=2 * tp / (n_p + n_t) if (n_p + n_t) else float("nan"),
        count_error=(n_p - n_t) / n_t if n_t else float("nan"), pairs=pairs, displacement_um=disp,
        area_true_um2=np.bincount(np.asarray(true).ravel())[1:] * px2,
        area_predicted_um2=np.bincount(np.asarray(predicted).ravel())[1:] * px2,
    )
