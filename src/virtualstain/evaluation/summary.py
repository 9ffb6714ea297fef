"""Pool the rows of an evaluation per channel: means and medians, FRM's accuracy score P, VirFluoNet's
tolerance curve (the mean of the images' curves, and its minimum), object readouts and their feature
correlations (pooled over all matched objects, and per image).

Lengths stay in the unit the rows were measured in (µm, or px without a pixel size); see
:mod:`virtualstain.evaluation.types`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..analysis.features import FEATURES, feature_correlations
from ..metrics.correlation import accuracy_score_of_r
from ..metrics.tolerance import THRESHOLD_FRACTIONS
from .types import ChannelPool, ChannelSummary, ImageRow, ObjectSummary, ToleranceCurve

_NAN = float("nan")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else _NAN


def _nanmedian(values: Sequence[float]) -> float:
    return float(np.nanmedian(values)) if any(np.isfinite(v) for v in values) else _NAN


def _pooled(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else _NAN


def _p90(values: np.ndarray) -> float:
    return float(np.percentile(values, 90)) if values.size else _NAN


def summarise_tolerance(pool: ChannelPool) -> ToleranceCurve | None:
    """The mean over the images of their tolerance curves (each on thresholds i/100 of its own target's range)."""
    if not pool.tolerance:
        return None
    return ToleranceCurve(threshold_fraction=THRESHOLD_FRACTIONS.copy(),
                          intensity_error=np.mean([c.intensity_error for c in pool.tolerance], axis=0),
                          spatial_error=np.mean([c.spatial_error for c in pool.tolerance], axis=0),
                          total=np.mean([c.total for c in pool.tolerance], axis=0))


def _per_image_r(pool: ChannelPool) -> dict[str, list[float]]:
    """Each feature's real-vs-virtual r in each image, in image order."""
    return {k: [float(r[k]) for r in pool.feature_r] for k in FEATURES}


def summarise_objects(rows: list[ImageRow], pool: ChannelPool) -> ObjectSummary:
    """Counts over all images, means of the per-image scores, and medians over all matched objects."""
    objects = [r.objects for r in rows if r.objects is not None]
    n_t = sum(o.count_target for o in objects)
    n_p = sum(o.count_prediction for o in objects)
    displacement = _pooled(pool.displacement)
    per_image = _per_image_r(pool)
    return ObjectSummary(
        count_target_total=int(n_t), count_prediction_total=int(n_p),
        count_error_total=(n_p - n_t) / n_t if n_t else _NAN,
        count_error_abs_mean=_nanmean([abs(o.count_error) for o in objects]),
        f1_mean=_nanmean([o.f1 for o in objects]), matched=int(displacement.size),
        displacement_median=_median(displacement), displacement_p90=_p90(displacement),
        area_target_median=_median(_pooled(pool.area_target)),
        area_prediction_median=_median(_pooled(pool.area_prediction)),
        area_ratio_median=_nanmean([o.area_ratio_median for o in objects]),
        feature_pearson_r=feature_correlations(
            {k: np.concatenate([t[k] for t in pool.features_real]) for k in FEATURES},
            {k: np.concatenate([t[k] for t in pool.features_virtual]) for k in FEATURES}),
        feature_pearson_r_per_image=per_image,
        feature_pearson_r_image_median={k: _nanmedian(v) for k, v in per_image.items()},
    )


def summarise_channel(rows: list[ImageRow], pool: ChannelPool) -> ChannelSummary:
    """Pool one channel's rows (in the order of ``pool``); verdicts are left to :mod:`.verdicts`."""
    r = [row.pixels.pearson_r for row in rows]
    p = accuracy_score_of_r(r, pool.small_targets)  # targets subsampled, r of the full images
    return ChannelSummary(
        n_images=len(rows), readout=pool.kind, pearson_r_mean=_nanmean(r), pearson_r_median=_nanmedian(r),
        accuracy_score_p=p.p, p_images_with_signal=p.n_used,
        segmentation_pcc_mean=_nanmean([row.pixels.segmentation_pcc for row in rows]),
        ssim_mean=_nanmean([row.pixels.ssim for row in rows]), psnr_mean=_nanmean([row.pixels.psnr for row in rows]),
        nrmse_mean=_nanmean([row.pixels.nrmse for row in rows]), mae_mean=_nanmean([row.pixels.mae for row in rows]),
        baseline_pearson_r_mean=_nanmean([row.baseline.pearson_r for row in rows]),
        baseline_ssim_mean=_nanmean([row.baseline.ssim for row in rows]),
        error_area_fraction_mean=_nanmean([row.tolerance.error_area_fraction for row in rows]),
        tolerance_curve=summarise_tolerance(pool),
        undefined=[f"{row.image}: {row.note}" for row in rows if row.note],
        objects=summarise_objects(rows, pool) if pool.kind != "none" else None,
    )


def summarise(rows: list[ImageRow], pools: dict[str, ChannelPool]) -> dict[str, ChannelSummary]:
    """One :class:`ChannelSummary` per pooled channel."""
    return {name: summarise_channel([r for r in rows if r.channel == name], pool) for name, pool in pools.items()}
