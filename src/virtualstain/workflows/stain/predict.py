"""``virtualstain predict``: apply a model bundle to image files; outputs keep the inputs' names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..._atomic import atomic_path, ensure_writable_dir, refuse_overwriting_inputs, remove_stale_parts
from ...data.acquisition import TOLERANCE, Acquisition
from ...data.io import channels_first_by_axes, output_path, read_image, write_tiff
from ...data.samples import load_input
from ...errors import UserError
from ...inference.backend_choice import last_choice
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
    k = prediction.shape[-1] // grey.shape[-1]
    if k > 1:  # a super-resolution model: show the input on the output's grid
        grey = np.kron(grey, np.ones((k, k), grey.dtype))[: prediction.shape[-2], : prediction.shape[-1]]
    rgb = np.repeat(0.5 * grey[..., None], 3, axis=-1)
    colors = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    for c in range(prediction.shape[0]):
        rgb += 0.8 * to_unit(prediction[c])[..., None] * colors[c % len(colors)]
    rgb8 = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb8).save(tmp, format="PNG")
    return Path(path)


@dataclass(frozen=True)
class _Recipe:
    """What decides a prediction's values: the model's weights, the options that change the answer, the source."""

    model_sha256: str
    source: str
    tta: bool
    match_brightness: bool
    border: str
    input_channels: list[int] | None
    stitch: str = "exact"

    def description(self) -> dict:
        return {"model_sha256": self.model_sha256, "source": self.source, "tta": self.tta,
                "match_brightness": self.match_brightness, "border": self.border, "input_channels": self.input_channels,
                "stitch": self.stitch}


#: Values of recipe keys that outputs of older versions do not record (they were all made so).
_RECIPE_DEFAULTS = {"stitch": "exact"}


def _stitch(opts: PredictOptions) -> str:
    """The stitching as recorded: ``exact``, or ``blend`` with its overlap and window size."""
    if opts.stitch == "exact":
        return "exact"
    return f"blend, overlap {opts.blend_overlap} px, windows {opts.tile_size or 'default'}"


class PredictedFiles(list[Path]):
    """The output TIFFs of :func:`predict_files`, in input order (a list of Path), and what happened to them.

    Attributes
    ----------
    skipped : list of Path
        Outputs that were already there, made by this model with these options from this source: left alone.
    redone : dict of Path to str
        Outputs that were there but not up to date (another model or options, unreadable, wrong shape, the
        composite missing) and were written again, with the reason.
    removed_parts : list of Path
        Temporary files of an interrupted run that were deleted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[Path] = []
        self.redone: dict[Path, str] = {}
        self.removed_parts: list[Path] = []


def _expected_shape(bundle: ModelBundle, image: np.ndarray) -> tuple[int, ...]:
    factors = (1,) * (image.ndim - 3) + (bundle.config.scale, bundle.config.scale)
    return (len(bundle.output_channel_names), *(n * f for n, f in zip(image.shape[1:], factors)))


def _up_to_date(dest: Path, recipe: _Recipe, shape: tuple[int, ...], names: list[str],
                composite: bool) -> tuple[np.ndarray | None, str | None]:
    """(the prediction read back or None, why it must be redone or None) for an existing output ``dest``."""
    try:
        array, meta = read_image(dest)
    except UserError:
        return None, "unreadable (truncated or not a TIFF)"
    wanted = recipe.description()
    recorded = {key: meta.description.get(key, _RECIPE_DEFAULTS.get(key)) for key in wanted}
    if "model_sha256" not in meta.description:
        return None, "not marked with a model and options (another program or an older virtualstain wrote it)"
    if recorded != wanted:
        changed = [key for key, value in wanted.items() if recorded[key] != value]
        what = "another model" if "model_sha256" in changed else "other " + ", ".join(changed).replace("_", " ")
        return None, f"made with {what}"
    prediction = channels_first_by_axes(array, meta.axes)
    if prediction.shape != shape or (meta.channel_names and meta.channel_names != names):
        return None, f"shape {prediction.shape}, expected {shape}"
    if composite and not _readable_png(dest.with_suffix(".png")):
        return prediction, "composite PNG missing or unreadable"
    return prediction, None


def _readable_png(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Exception:  # missing, empty, truncated: PIL raises many kinds
        return False
    return True


def predict_files(model: ModelBundle | str | os.PathLike, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  options: PredictOptions | None = None, *, input_channels: list[int] | None = None,
                  overwrite: bool = False, composite: bool = False, **option_changes) -> PredictedFiles:
    """Predict many files; outputs already made by this model with these options are skipped unless ``overwrite``.

    An input may join several files with ``;`` (``actin.tif;nuclei.tif``: their channels stacked in order, as in
    a training manifest); its output is named after the first. Each output is a float32 OME-TIFF in the target's
    units named like its input, with
    the model's output channel names and the pixel size; ``composite=True`` adds a PNG.
    No output may be one of the inputs (checked first, also through links). An existing output
    counts as done only if its description records this model's weights hash, the same
    ``tta``, ``match_brightness``, ``border``, stitching, input channels and source file name, it reads back with the
    expected shape and, with ``composite``, its PNG exists; otherwise it is predicted again.
    Temporary files left by a killed run are removed first.

    Parameters
    ----------
    options : PredictOptions, optional
        How to predict (tiles, TTA, device…); ``progress`` defaults to True here.
    **option_changes
        Any :class:`~virtualstain.inference.options.PredictOptions` field by name, on top of ``options``.

    Returns
    -------
    PredictedFiles
        The output TIFFs (written now or already up to date), with ``skipped`` and ``redone``.
    """
    opts = (options or PredictOptions(progress=True)).replace(**option_changes)
    groups = [[Path(q) for q in str(p).split(";")] for p in inputs]  # "a.tif;b.tif": channels of several files
    if not groups:
        raise UserError("no input images given; pass one or more image files")
    names = [output_path(Path(out_dir), g[0]) for g in groups]
    if len(set(names)) != len(names):
        raise UserError("two inputs have the same file name, so their outputs would collide; rename one of them")
    refuse_overwriting_inputs(names + ([n.with_suffix(".png") for n in names] if composite else []),
                              [q for g in groups for q in g])
    for p in (q for g in groups for q in g):
        if not p.exists():
            raise UserError(f"{p}: file not found; check the path")
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model, device=pick_device(opts.device))
    ensure_writable_dir(out_dir)
    done = PredictedFiles()
    done.removed_parts = remove_stale_parts(names + [n.with_suffix(".png") for n in names])
    channels = input_channels if input_channels is not None else bundle.input_channels
    bar = tqdm(list(zip(groups, names)), desc="predict", unit="image", disable=not opts.progress)
    for group, dest in bar:
        path, source = group[0], ";".join(q.name for q in group)
        image, meta = load_input(group if len(group) > 1 else path, bundle.config.spatial_dims, channels,
                                 bundle.input_channel_names if input_channels is None else None)
        recipe = _Recipe(model_sha256=bundle.weights_sha256, source=source, tta=opts.tta,
                         match_brightness=opts.match_brightness, border=opts.border, input_channels=channels,
                         stitch=_stitch(opts))
        if dest.exists() and not overwrite:
            existing, reason = _up_to_date(dest, recipe, _expected_shape(bundle, image), bundle.output_channel_names,
                                           composite)
            if reason is None:
                done.skipped.append(dest)
                done.append(dest)
                continue
            done.redone[dest] = reason
            if existing is not None:  # only the composite is missing: the prediction on disk is this one
                write_composite(dest.with_suffix(".png"), image, existing)
                done.append(dest)
                continue
        px = meta.pixel_size_um
        pred = predict(bundle, image, opts, source=";".join(map(str, group)), pixel_size_um=px,
                       acquisition=Acquisition.from_description(meta.description))
        choice = last_choice(bundle)
        engine = {"engine": str(choice.spec)} if choice else {}  # provenance; not part of the recipe
        engine.update(rescaled_note(bundle, px))
        done.append(write_prediction(dest, bundle, pred, source=source, pixel_size_um=px,
                                     composite_of=image if composite else None, recipe={**recipe.description(), **engine}))
    return done


def rescaled_note(bundle: ModelBundle, pixel_size_um: float | None) -> dict:
    """``{"rescaled_from_um": image px, "model_pixel_size_um": …}`` when the image was resampled to the model's grid."""
    if pixel_size_um and bundle.pixel_size_um and abs(pixel_size_um / bundle.pixel_size_um - 1) > TOLERANCE:
        return {"rescaled_from_um": pixel_size_um, "model_pixel_size_um": bundle.pixel_size_um}
    return {}


def write_prediction(dest: Path, bundle: ModelBundle, prediction: np.ndarray, *, source: str,
                     pixel_size_um: float | None, composite_of: np.ndarray | None = None,
                     recipe: dict | None = None) -> Path:
    """Write one prediction as a float32 OME-TIFF in the target's units (and, given the input, its composite PNG).

    The TIFF carries the model's output channel names, the output pixel size (the input's, else the model's,
    divided by the scale) and in its description the model's weights hash, the source file and the units, plus
    ``recipe`` (what :func:`predict_files` checks before skipping: options that change the answer).
    """
    out_px = (pixel_size_um or bundle.pixel_size_um or 0) / bundle.config.scale or None
    description = {"model": bundle.weights_sha256[:16], "source": source, "units": "target",
                   "model_sha256": bundle.weights_sha256, **(recipe or {})}
    write_tiff(dest, prediction, pixel_size_um=out_px, channel_names=bundle.output_channel_names,
               description=description)
    if composite_of is not None:
        write_composite(dest.with_suffix(".png"), composite_of, prediction)
    return dest
