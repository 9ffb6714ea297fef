"""``virtualstain register MODEL LABEL_FREE FLUORESCENCE --out DIR``: registration by prediction (fnet).

The model predicts the stain from the label-free image; the similarity transform (shift, rotation, scale)
that brings the real fluorescence onto it is estimated (:func:`~virtualstain.analysis.registration.estimate_similarity`),
the fluorescence (every channel) is resampled onto the label-free grid and written with the transform
(``transform.json``), the correlation before and after, and the residual: the shift still found between the
prediction and the aligned image over its fully covered centre (≈ 0 when the alignment holds).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import atomic_path, ensure_writable_dir, refuse_overwriting_inputs
from ...analysis.registration import Similarity, align, estimate_similarity, overlap_correlation, residual_shift
from ...data.io import output_path, write_tiff
from ...data.samples import load_input
from ...errors import UserError
from ...inference.options import PredictOptions
from ...inference.predict import predict
from ...models.bundle import ModelBundle, load_bundle


@dataclass(frozen=True)
class Registration:
    """What :func:`register_by_prediction` found: the transform, r before/after, the residual, the files written."""

    transform: Similarity
    r_before: float
    r_after: float
    residual: tuple[float, float]
    aligned: Path
    report: Path


def register_by_prediction(model: ModelBundle | str | os.PathLike, label_free: str | os.PathLike,
                           fluorescence: str | os.PathLike, out_dir: str | os.PathLike, *, channel: int | None = None,
                           options: PredictOptions | None = None) -> Registration:
    """Align ``fluorescence`` to ``label_free`` through the model's prediction (see the module).

    ``channel`` picks the predicted channel to register on (default: the one named like the fluorescence file's
    first channel, else 0); the fluorescence's first channel is matched against it.

    Raises
    ------
    UserError
        The files do not suit the model, have different sizes, or ``channel`` does not exist.
    """
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    out_dir = Path(out_dir)
    aligned_path = output_path(out_dir, Path(fluorescence))
    report_path = aligned_path.with_suffix(".transform.json")
    refuse_overwriting_inputs([aligned_path, report_path], [Path(label_free), Path(fluorescence)])
    image, meta = load_input(label_free, 2, bundle.input_channels, bundle.input_channel_names)
    target, target_meta = load_input(fluorescence, 2, None, None)
    if target.shape[1:] != image.shape[1:]:
        raise UserError(f"{fluorescence}: {target.shape[1:]} px but {label_free} is {image.shape[1:]}; registration "
                        "by prediction needs images of one size (crop or pad the fluorescence first)")
    prediction = predict(bundle, image, options, source=str(label_free), pixel_size_um=meta.pixel_size_um)
    names = bundle.output_channel_names
    if channel is None:
        channel = names.index(target_meta.channel_names[0]) if target_meta.channel_names[:1] and \
            target_meta.channel_names[0] in names else 0
    if not 0 <= channel < prediction.shape[0]:
        raise UserError(f"--channel {channel}: the model predicts {len(names)} channel(s) ({', '.join(names)})")
    reference = prediction[channel]
    transform = estimate_similarity(reference, target[0])
    aligned = np.stack([align(c, transform) for c in target]).astype(np.float32)
    residual = residual_shift(reference, aligned[0], transform)
    result = Registration(transform, overlap_correlation(reference, target[0], Similarity()),
                          overlap_correlation(reference, target[0], transform), residual, aligned_path, report_path)
    ensure_writable_dir(out_dir)
    write_tiff(aligned_path, aligned, pixel_size_um=target_meta.pixel_size_um or meta.pixel_size_um,
               channel_names=target_meta.channel_names or None,
               description={"registered_to": Path(label_free).name, "model_sha256": bundle.weights_sha256,
                            **{f"transform_{k}": v for k, v in transform.to_dict().items()}})
    with atomic_path(report_path) as tmp:
        tmp.write_text(json.dumps({"label_free": str(label_free), "fluorescence": str(fluorescence),
                                   "predicted_channel": names[channel], "transform": transform.to_dict(),
                                   "convention": "moving(c + s·R(θ)·(p − c) + t) shows reference(p); c the centre",
                                   "r_before": result.r_before, "r_after": result.r_after,
                                   "residual_shift_px": list(residual)}, indent=2), encoding="utf-8")
    return result
