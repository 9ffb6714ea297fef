"""``virtualstain predict``: apply a model bundle to image files; outputs keep the inputs' names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..._atomic import atomic_path, ensure_writable_dir, refuse_overwriting_inputs, remove_stale_parts
from ...analysis.input_domain import TileScores
from ...data.acquisition import TOLERANCE, Acquisition
from ...data.io import channels_first_by_axes, output_path, read_image, write_tiff
from ...data.samples import load_input
from ...errors import UserError
from ...inference.backend_choice import last_choice
from ...inference.domain_check import CHECK_TILES, warn_if_unfamiliar
from ...inference.domain_check import check_domain as check_domain_of
from ...inference.options import PredictOptions
from ...inference.predict import pick_device, predict, predict_with_uncertainty
from ...inference.rescale import model_grid_shape, rescale_factor
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


def sidecar_paths(dest: Path, *, composite: bool = False, uncertainty: bool = False,
                  ood_map: bool = False) -> list[Path]:
    """The files written beside the prediction ``dest``: its composite PNG, ``NAME_sigma.tif``, ``NAME_ood.tif``."""
    return ([dest.with_suffix(".png")] if composite else []) + \
        ([dest.with_name(f"{dest.stem}_sigma.tif")] if uncertainty else []) + \
        ([dest.with_name(f"{dest.stem}_ood.tif")] if ood_map else [])


def predict_files(model: ModelBundle | str | os.PathLike, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  options: PredictOptions | None = None, *, input_channels: list[int] | None = None,
                  overwrite: bool = False, composite: bool = False, uncertainty: bool = False, ood_map: bool = False,
                  check_domain: bool = True, **option_changes) -> PredictedFiles:
    """Predict many files; outputs already made by this model with these options are skipped unless ``overwrite``.

    An input may join several files with ``;`` (``actin.tif;nuclei.tif``: their channels stacked in order, as in
    a training manifest); its output is named after the first. Each output is a float32 OME-TIFF in the target's
    units named like its input, with
    the model's output channel names and the pixel size; ``composite=True`` adds a PNG; ``uncertainty=True`` adds
    ``NAME_sigma.tif``, the calibrated per-pixel σ (target units; ``predict_with_uncertainty``; it turns TTA on);
    ``ood_map=True`` adds ``NAME_ood.tif``, the input check's score of every tile and the ratio of
    each descriptor group (1 = the edge of what training saw; :mod:`~virtualstain.inference.domain_check`).
    With ``check_domain`` (default) every input is checked against the model's training domain: an input mostly
    outside it gets an :class:`~virtualstain.inference.domain_check.UnfamiliarInputWarning` saying what differs, and
    every output records the share of its tiles outside (``ood_outside``).
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
    if uncertainty:
        opts = opts.replace(tta=True)
    groups = [[Path(q) for q in str(p).split(";")] for p in inputs]  # "a.tif;b.tif": channels of several files
    if not groups:
        raise UserError("no input images given; pass one or more image files")
    names = [output_path(Path(out_dir), g[0]) for g in groups]
    if len(set(names)) != len(names):
        raise UserError("two inputs have the same file name, so their outputs would collide; rename one of them")
    extras = {"composite": composite, "uncertainty": uncertainty, "ood_map": ood_map}
    refuse_overwriting_inputs(names + [p for n in names for p in sidecar_paths(n, **extras)],
                              [q for g in groups for q in g])
    for p in (q for g in groups for q in g):
        if not p.exists():
            raise UserError(f"{p}: file not found; check the path")
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model, device=pick_device(opts.device))
    ensure_writable_dir(out_dir)
    done = PredictedFiles()
    done.removed_parts = remove_stale_parts(names + [p for n in names for p in sidecar_paths(n, composite=True,
                                                                                            uncertainty=True,
                                                                                            ood_map=True)])
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
            missing = [p.name for p in sidecar_paths(dest, uncertainty=uncertainty, ood_map=ood_map) if not p.exists()]
            if reason is None and missing:
                existing, reason = None, f"{', '.join(missing)} missing"
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
        full_name = ";".join(map(str, group))
        acquisition = Acquisition.from_description(meta.description)
        if uncertainty:
            pred, sigma = predict_with_uncertainty(bundle, image, opts, source=full_name, pixel_size_um=px,
                                                   acquisition=acquisition)
        else:
            pred = predict(bundle, image, opts, source=full_name, pixel_size_um=px, acquisition=acquisition)
        notes: dict[str, float | int] = {}
        if check_domain or ood_map:
            scores = check_domain_of(bundle, image, source=full_name, pixel_size_um=px,
                                     max_tiles=None if ood_map else CHECK_TILES, rescale=opts.rescale)
            warn_if_unfamiliar(bundle, scores, full_name)
            if scores is not None:
                notes = {"ood_outside": round(scores.fraction_outside, 4), "ood_tiles": len(scores.corners)}
                if ood_map:
                    write_ood_map(dest.with_name(f"{dest.stem}_ood.tif"), bundle, scores, image.shape[-2:], px)
        choice = last_choice(bundle)
        engine: dict[str, object] = {"engine": str(choice.spec)} if choice else {}  # provenance, not the recipe
        engine.update(rescaled_note(bundle, px))
        engine.update(notes)
        if uncertainty:
            write_sigma(dest.with_name(f"{dest.stem}_sigma.tif"), bundle, sigma, source=source, pixel_size_um=px)
        done.append(write_prediction(dest, bundle, pred, source=source, pixel_size_um=px,
                                     composite_of=image if composite else None, recipe={**recipe.description(), **engine}))
    return done


def write_sigma(dest: Path, bundle: ModelBundle, sigma: np.ndarray, *, source: str, pixel_size_um: float | None) -> Path:
    """Write the calibrated σ (``NAME_sigma.tif``: one channel per output channel, ``σ_<name>``, target units)."""
    out_px = (pixel_size_um or bundle.pixel_size_um or 0) / bundle.config.scale or None
    calibration = bundle.uncertainty
    write_tiff(dest, sigma, pixel_size_um=out_px, channel_names=[f"sigma_{n}" for n in bundle.output_channel_names],
               description={"model_sha256": bundle.weights_sha256, "source": source, "units": "target",
                            "sigma": "standard deviation over the 8 test-time flips/rotations × calibration factor",
                            "calibrated": calibration is not None,
                            "factors": calibration.factors(bundle.output_channel_names) if calibration else None})
    return dest


def write_ood_map(dest: Path, bundle: ModelBundle, scores: TileScores, shape_yx: tuple[int, ...],
                  pixel_size_um: float | None) -> Path:
    """Write the input check's per-tile map (``NAME_ood.tif``: the score, then each group's ratio; 1 = the edge of
    what training saw) on the input's grid."""
    maps = scores.maps(_model_grid(bundle, shape_yx, pixel_size_um))
    if maps.shape[-2:] != tuple(shape_yx):  # the image was rescaled to the model's grid: back by nearest neighbour
        iy = (np.arange(shape_yx[0]) * maps.shape[-2] / shape_yx[0]).astype(int)
        ix = (np.arange(shape_yx[1]) * maps.shape[-1] / shape_yx[1]).astype(int)
        maps = maps[:, iy][:, :, ix]
    write_tiff(dest, maps, pixel_size_um=pixel_size_um, channel_names=["ood_score", *scores.ratios],
               description={"model_sha256": bundle.weights_sha256, "tile_px": scores.tile_px,
                            "units": "distance / threshold (> 1: outside the training domain)"})
    return dest


def _model_grid(bundle: ModelBundle, shape_yx: tuple[int, ...], pixel_size_um: float | None) -> tuple[int, int]:
    factor = rescale_factor(pixel_size_um, bundle.pixel_size_um, True, "<image>", bundle.config.scale > 1)
    return model_grid_shape(shape_yx, factor) if factor is not None else (shape_yx[-2], shape_yx[-1])


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
