"""Calibrate a freshly trained model's σ on its validation regions and judge it on its test regions.

σ is the test-time-augmentation spread (:func:`~virtualstain.inference.predict.predict_with_uncertainty`). The
factor per channel comes from the validation regions (the network never trained on them); coverage, tile Spearman
and the reliability diagram are measured on the test regions, which neither trained the network nor set the
factor (:mod:`virtualstain.metrics.uncertainty`).
"""

from __future__ import annotations

import numpy as np

from ...data.samples import Sample
from ...data.splits import SplitPlan
from ...evaluation.types import SigmaPanel
from ...inference.predict import predict_with_uncertainty
from ...metrics.uncertainty import (
    ChannelCalibration,
    UncertaintyCalibration,
    calibration_factor,
    coverage,
    floored,
    reliability,
    tile_spearman,
)
from ...models.bundle import ModelBundle


def _errors_and_sigmas(bundle: ModelBundle, samples: list[Sample], plan: SplitPlan, split: str,
                       max_size: int | None, max_regions: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, prediction − target, raw σ) of each region of ``split``, in target units."""
    out = []
    for r in plan.of(split)[:max_regions]:
        x, y = r.crop(samples[r.sample], max_size)
        pred, sigma = predict_with_uncertainty(bundle, x, source=samples[r.sample].name)
        out.append((samples[r.sample].name, pred - y, sigma))
    return out


def calibrate_uncertainty(bundle: ModelBundle, samples: list[Sample], plan: SplitPlan, val_max_size: int | None,
                          val_max_regions: int | None = None) -> tuple[UncertaintyCalibration | None, list[SigmaPanel]]:
    """The calibration of ``bundle``'s σ (which must not have one yet) and σ panels of the first test regions.

    Returns (None, []) without validation regions.
    """
    if bundle.uncertainty is not None:
        raise ValueError("the bundle is calibrated already; calibrate the raw spread")
    val = _errors_and_sigmas(bundle, samples, plan, "val", val_max_size, val_max_regions)
    if not val:
        return None, []
    test = _errors_and_sigmas(bundle, samples, plan, "test", None)
    channels, panels = {}, []
    for c, name in enumerate(bundle.output_channel_names):
        unit = float(bundle.target_normalizer.scale[c])
        e_val = np.concatenate([e[c].ravel() for _, e, _ in val])
        s_val = np.concatenate([floored(s[c], unit).ravel() for _, _, s in val])
        factor = calibration_factor(e_val, s_val)
        cal = ChannelCalibration(factor)
        if test:
            errors = [e[c] for _, e, _ in test]
            sigmas = [factor * floored(s[c], unit) for _, _, s in test]
            e_all = np.concatenate([e.ravel() for e in errors])
            s_all = np.concatenate([s.ravel() for s in sigmas])
            mean_s, rms = reliability(e_all, s_all)
            cal = ChannelCalibration(factor, coverage(e_all, s_all, 1), coverage(e_all, s_all, 2),
                                     tile_spearman(errors, sigmas), mean_s.tolist(), rms.tolist())
            panels.append(SigmaPanel(test[0][0], name, sigmas[0], np.abs(errors[0])))
        channels[name] = cal
    judged = f"{len(test)} test region(s)" if test else "no test region"
    method = f"tta + ensemble of {1 + len(bundle.members)}" if bundle.members else "tta"
    return UncertaintyCalibration(method, f"{len(val)} validation region(s)", judged, channels), panels
