"""``virtualstain predict``: apply a model bundle to image files; outputs keep the inputs' names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..._atomic import atomic_path, ensure_writable_dir
from ...data.acquisition import Acquisition
from ...data.io import output_path, write_tiff
from ...data.samples import load_input
from ...errors import UserError
from ...inference.options import PredictOptions
from ...inference.predict import pick_device, predict
from ...models.bundle import ModelBundle, load_bundle


def write_composite(path: str | os.PathLike, image: np.ndarray, prediction: np.ndarray) -> Path:
    """Write an RGB PNG: the input (grey, first channel) with predicted stains in green, magenta, cyan….

    3D arrays are shown as their maximum projection over Z.
    """
    from PIL import Image

    def to_unit(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, (1, 99.8))
        return np.clip((a - lo) / (hi - lo + 1e-12), 0, 1)

    if image.ndim == 4:
        image, prediction = image.max(axis=1), prediction.max(axis=1)
    grey = to_unit(image[0])
    rgb = np.repeat(0.5 * grey[..., None], 3, axis=-1)
    colors = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    for c in range(prediction.shape[0]):
        rgb += 0.8 * to_unit(prediction[c])[..., None] * colors[c % len(colors)]
    rgb8 = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb8).save(tmp, format="PNG")
    return Path(path)


def predict_files(model: ModelBundle | str | os.PathLike, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  options: PredictOptions | None = None, *, input_channels: list[int] | None = None,
                  overwrite: bool = False, composite: bool = False, **option_changes) -> list[Path]:
    """Predict many files; finished outputs are skipped unless ``overwrite``.

    Each output is a float32 OME-TIFF in the target's units named like its input, with
    the model's output channel names and the pixel size; ``composite=True`` adds a PNG.
    Inputs are checked before any work starts, so a bad file fails fast.

    Parameters
    ----------
    options : PredictOptions, optional
        How to predict (tiles, TTA, device…); ``progress`` defaults to True here.
    **option_changes
        Any :class:`~virtualstain.inference.options.PredictOptions` field by name, on top of ``options``.

    Returns
    -------
    list of Path
        The output TIFFs (written now or already present).
    """
    opts = (options or PredictOptions(progress=True)).replace(**option_changes)
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model, device=pick_device(opts.device))
    out = ensure_writable_dir(out_dir)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UserError("no input images given; pass one or more image files")
    names = [output_path(out, p) for p in paths]
    if len(set(names)) != len(names):
        raise UserError("two inputs have the same file name, so their outputs would collide; rename one of them")
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: file not found; check the path")
    channels = input_channels if input_channels is not None else bundle.input_channels
    done: list[Path] = []
    bar = tqdm(list(zip(paths, names)), desc="predict", unit="image", disable=not opts.progress)
    for path, dest in bar:
        if dest.exists() and not overwrite:
            done.append(dest)
            continue
        image, meta = load_input(path, bundle.config.spatial_dims, channels,
                                 bundle.input_channel_names if input_channels is None else None)
        px = meta.pixel_size_um
        pred = predict(bundle, image, opts, source=str(path), pixel_size_um=px,
                       acquisition=Acquisition.from_description(meta.description))
        done.append(write_prediction(dest, bundle, pred, source=path.name, pixel_size_um=px,
                                     composite_of=image if composite else None))
    return done


def write_prediction(dest: Path, bundle: ModelBundle, prediction: np.ndarray, *, source: str,
                     pixel_size_um: float | None, composite_of: np.ndarray | None = None) -> Path:
    """Write one prediction as a float32 OME-TIFF in the target's units (and, given the input, its composite PNG).

    The TIFF carries the model's output channel names, the output pixel size (the input's, else the model's,
    divided by the scale) and in its description the model's weights hash, the source file and the units.
    """
    out_px = (pixel_size_um or bundle.pixel_size_um or 0) / bundle.config.scale or None
    write_tiff(dest, prediction, pixel_size_um=out_px, channel_names=bundle.output_channel_names,
               description={"model": bundle.weights_sha256[:16], "source": source, "units": "target"})
    if composite_of is not None:
        write_composite(dest.with_suffix(".png"), composite_of, prediction)
    return dest
