"""``train --check-registration``: find manifest pairs whose fluorescence is misaligned, before training on them.

fnet's registration by prediction, applied to the training data itself: a short preliminary model is trained on all
pairs (:data:`PRELIMINARY_SHARE` of the budget, at most :data:`PRELIMINARY_MINUTES`; misaligned pairs blur it but do
not stop it from finding structures), it predicts every pair's stain from its label-free image, and the similarity
transform that brings the real fluorescence onto that prediction is estimated
(:func:`~virtualstain.analysis.registration.estimate_similarity`; kept only where rotation and scale raise the
correlation beyond what the shift alone gives, :func:`parsimonious_transform`). Pairs whose transform moves some
pixel of the field by more than :data:`MAX_MISALIGNMENT_PX` are flagged, with the transform and the fix; every pair is listed in
``RUN/registration.csv``. The flagged pairs are reported, not dropped: the user decides (``virtualstain register``
aligns them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize

from ..._atomic import write_csv_atomic
from ...analysis.registration import Similarity, estimate_similarity, overlap_correlation
from ...data.samples import Sample
from ...inference.predict import predict
from ...models.bundle import load_bundle
from ...training.config import TrainConfig

#: Largest displacement of any pixel (px) a pair may show and still count as registered.
MAX_MISALIGNMENT_PX = 1.0
#: Least gain in overlap correlation for which rotation and scale are kept on top of the shift.
MIN_GAIN_R = 0.005
#: Share of the training budget, and the most minutes, the preliminary model gets.
PRELIMINARY_SHARE, PRELIMINARY_MINUTES = 0.2, 2.0


@dataclass(frozen=True)
class PairRegistration:
    """One manifest pair as found by the check: its transform and the largest displacement it makes (px)."""

    name: str
    source: str
    transform: Similarity
    max_displacement_px: float

    @property
    def misaligned(self) -> bool:
        return self.max_displacement_px > MAX_MISALIGNMENT_PX


def max_displacement(transform: Similarity, shape_yx: tuple[int, int]) -> float:
    """The largest distance (px) the transform moves a pixel of a ``shape_yx`` field (at its corners, about the
    centre): ``|t + (M − I)·(corner − centre)|`` with ``M`` = :meth:`Similarity.matrix`."""
    c = (np.asarray(shape_yx, float) - 1) / 2
    corners = np.array([[0, 0], [0, shape_yx[1] - 1], [shape_yx[0] - 1, 0], [shape_yx[0] - 1, shape_yx[1] - 1]]) - c
    moved = np.array([transform.dy, transform.dx]) + corners @ (transform.matrix() - np.eye(2)).T
    return float(np.linalg.norm(moved, axis=1).max())


def parsimonious_transform(reference: np.ndarray, moving: np.ndarray) -> Similarity:
    """The shift that aligns ``moving`` to ``reference`` (phase correlation, then refinement of the shift), or the
    full similarity transform where rotation and scale raise the overlap correlation by at least
    :data:`MIN_GAIN_R` more: a short preliminary model's blurry prediction leaves rotation and scale estimates
    noisy enough to move a field's corners by a pixel on their own."""
    from skimage.registration import phase_cross_correlation

    ref, mov = np.asarray(reference, np.float64), np.asarray(moving, np.float64)
    (dy, dx), _, _ = phase_cross_correlation(ref, mov, upsample_factor=20, normalization=None)
    start = Similarity(-float(dy), -float(dx))

    def loss(p: np.ndarray) -> float:
        return -overlap_correlation(ref, mov, Similarity(float(p[0]), float(p[1])))

    x0 = np.array([start.dy, start.dx])
    fitted = optimize.minimize(loss, x0, method="Powell", options={"xtol": 1e-3})
    shift = Similarity(float(fitted.x[0]), float(fitted.x[1])) if fitted.fun <= loss(x0) else start
    full = estimate_similarity(ref, mov)
    gain = overlap_correlation(ref, mov, full) - overlap_correlation(ref, mov, shift)
    return full if gain >= MIN_GAIN_R else shift


def check_registration(samples: list[Sample], config: TrainConfig, run: Path,
                       log: Callable[[str], None]) -> list[PairRegistration]:
    """Train the preliminary model in ``run/registration_check``, register every pair, write
    ``run/registration.csv`` and log one line per misaligned pair (see the module)."""
    from .train import train  # the preliminary model is trained like any other

    preliminary = config.model_copy(deep=True)
    budget = config.training.max_minutes
    preliminary.training.max_minutes = min(PRELIMINARY_MINUTES, PRELIMINARY_SHARE * budget) if budget else \
        PRELIMINARY_MINUTES
    log(f"checking registration: a preliminary model ({preliminary.training.max_minutes:g} min) predicts every pair")
    result = train(samples, run / "registration_check", preliminary)
    bundle = result.bundle or load_bundle(result.model_dir)
    found = []
    for s in samples:
        reference = predict(bundle, s.input, source=s.name)[0]
        moving = s.target[0] if s.target.shape[-2:] == reference.shape else None
        if moving is None:  # super-resolution pairs: the target is on a finer grid; compare on it
            continue
        if reference.ndim == 3:  # volumes: register their Z maximum projections
            reference, moving = reference.max(0), moving.max(0)
        transform = parsimonious_transform(reference, moving)
        found.append(PairRegistration(s.name, s.source, transform, max_displacement(transform, moving.shape)))
    write_csv_atomic(run / "registration.csv",
                     [{"name": p.name, "source": p.source, **p.transform.to_dict(),
                       "max_displacement_px": round(p.max_displacement_px, 3), "misaligned": p.misaligned}
                      for p in found],
                     ["name", "source", "dy", "dx", "angle_deg", "scale", "max_displacement_px", "misaligned"])
    for p in found:
        if p.misaligned:
            t = p.transform
            log(f"{p.source}: the fluorescence is misaligned with its label-free image by up to "
                f"{p.max_displacement_px:.1f} px (shift {t.dy:+.1f}, {t.dx:+.1f} px, rotation {t.angle_deg:+.2f}°, "
                f"scale {t.scale:.4f}); align it (virtualstain register) or leave the row out")
    log(f"registration: {sum(p.misaligned for p in found)} of {len(found)} pair(s) misaligned by more than "
        f"{MAX_MISALIGNMENT_PX:g} px (table: {run / 'registration.csv'})")
    return found
