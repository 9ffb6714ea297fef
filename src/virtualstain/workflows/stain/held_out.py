"""The held-out test regions of a training run: predicted once, written, judged from memory.

``RUN/test/`` receives ``input/``, ``prediction/`` and ``target/`` TIFFs of every test region (for
a person to look at, and for ``virtualstain evaluate``) and the judgement of the arrays themselves
(``metrics.csv`` with a ``region`` column, ``summary.json``, ``report.html``); nothing is read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.io import write_tiff
from ...data.samples import Sample
from ...data.splits import Region, SplitPlan
from ...evaluation.scoring import Evaluator
from ...evaluation.types import Evaluation, SigmaPanel
from ...inference.predict import predict
from ...models.bundle import ModelBundle
from .evaluate import write_evaluation
from .nuclei_segmenter import judge_segmenter


@dataclass
class HeldOut:
    """One test region: its arrays (channels first) and where it lies.

    Attributes
    ----------
    name : str
        File stem of its TIFFs, e.g. ``field3_test``.
    region : Region
        Its bounds in its field (input pixels).
    input, target, prediction : numpy.ndarray
        The region's input, its real target and the model's prediction (target units; k× larger than
        the input for super-resolution).
    pixel_size_um : float or None
        Of the input; the target's is ``pixel_size_um / scale``.
    """

    name: str
    region: Region
    input: np.ndarray
    target: np.ndarray
    prediction: np.ndarray
    pixel_size_um: float | None


def predict_held_out(bundle: ModelBundle, samples: list[Sample], plan: SplitPlan) -> list[HeldOut]:
    """Predict every test region of ``plan`` (whole-field, tiled as memory requires)."""
    regions = plan.of("test")
    out = []
    for k, r in enumerate(regions):
        s = samples[r.sample]
        x, y = r.crop(s)
        name = s.name if plan.mode != "spatial" else f"{s.name}_test"
        if sum(1 for q in regions if samples[q.sample].name == s.name) > 1:
            name = f"{name}_{k}"
        out.append(HeldOut(name, r, x, y, predict(bundle, x, source=s.name), s.pixel_size_um))
    return out


def score_held_out(held_out: list[HeldOut], bundle: ModelBundle) -> Evaluation | None:
    """Judge the test regions from memory; None when there is none.

    The inputs are the baseline (not for super-resolution, whose inputs are on another grid: see
    :mod:`virtualstain.workflows.srqpi.evaluate`).
    """
    if not held_out:
        return None
    scale = bundle.config.scale
    evaluator = Evaluator(max_panels=4, nuclei_segmenter=judge_segmenter())
    for h in held_out:
        evaluator.add(f"{h.name}.tif", h.prediction, h.target, bundle.output_channel_names,
                      inputs=h.input if scale == 1 else None,
                      pixel_size_um=h.pixel_size_um / scale if h.pixel_size_um else None,
                      region=json.dumps(h.region.to_dict()["bounds"]))
    return evaluator.finish()


def judge_held_out(held_out: list[HeldOut], bundle: ModelBundle, plan: SplitPlan, out: Path,
                   sigma_panels: list[SigmaPanel] | None = None) -> Evaluation | None:
    """Write the test regions' TIFFs and their judgement (:func:`score_held_out`, with the model's σ calibration
    and ``sigma_panels`` in the report) into ``out``; None when there is no test region."""
    evaluation = score_held_out(held_out, bundle)
    if evaluation is None:
        return None
    evaluation.uncertainty, evaluation.sigma_panels = bundle.uncertainty, list(sigma_panels or [])
    scale = bundle.config.scale
    for h in held_out:
        target_px = h.pixel_size_um / scale if h.pixel_size_um else None
        for folder, array, names, px in (("prediction", h.prediction, bundle.output_channel_names, target_px),
                                         ("target", h.target, bundle.output_channel_names, target_px),
                                         ("input", h.input, bundle.input_channel_names, h.pixel_size_um)):
            write_tiff(out / folder / f"{h.name}.tif", array, pixel_size_um=px, channel_names=names)
    evaluation.out = write_evaluation(evaluation, out, title=f"Held-out test regions ({plan.description})")
    return evaluation
