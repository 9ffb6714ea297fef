"""Apply a model bundle to arrays or files of any size, in the target's units."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._atomic import atomic_path, ensure_writable_dir
from ..data.io import write_tiff
from ..data.samples import load_input
from ..errors import UserError
from ..models.bundle import ModelBundle, load_bundle
from .tiling import (
    DEFAULT_CPU_BUDGET_MB,
    apply_transform,
    auto_tile_size,
    count_tiles,
    dihedral_transforms,
    output_scale,
    pad_to_multiple,
    predict_padded,
)

PIXEL_SIZE_TOLERANCE = 0.10


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_tile(bundle: ModelBundle, tile_size: int | Sequence[int] | None, device: torch.device,
                 memory_budget_mb: float | None, padded_spatial: Sequence[int]) -> tuple[int, ...] | None:
    """Tile core per axis: ``0`` → whole image, ``None`` → from the memory budget, int → that size in YX."""
    cfg = bundle.config
    if tile_size == 0:
        return None
    if tile_size is None:
        if memory_budget_mb is None:
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                memory_budget_mb = 0.5 * free / 2 ** 20
            else:
                memory_budget_mb = DEFAULT_CPU_BUDGET_MB
        return auto_tile_size(cfg, memory_budget_mb, padded_spatial)
    if isinstance(tile_size, int):
        if tile_size < 0:
            raise UserError(f"--tile-size {tile_size} must be ≥ 0 (0 = whole image)")
        return tuple([10 ** 9] * (cfg.spatial_dims - 2) + [tile_size, tile_size])
    return tuple(int(t) for t in tile_size)


def check_input(bundle: ModelBundle, image: np.ndarray, source: str, pixel_size_um: float | None = None,
                description: dict | None = None) -> None:
    """Check channels, size, pixel size and acquisition of a channels-first image against the model.

    ``description`` is the image file's metadata: a ``binning`` or ``wavelength_um`` other than the
    training data's is refused (a super-resolution model learns one binning); a ``defocus_um`` or
    ``coherence`` outside the trained range gives a warning.

    Raises
    ------
    UserError
        With the file name and the fix.
    """
    cfg = bundle.config
    if image.ndim != cfg.spatial_dims + 1:
        raise UserError(f"{source}: array of shape {image.shape} but the model is {cfg.spatial_dims}D and expects "
                        f"(C, {'Z, ' if cfg.spatial_dims == 3 else ''}Y, X)")
    if image.shape[0] != cfg.in_channels:
        raise UserError(
            f"{source}: the image has {image.shape[0]} channel(s) but the model was trained on {cfg.in_channels} "
            f"({', '.join(bundle.input_channel_names)}); select the matching channels/planes with --input-channels"
        )
    small = [(n, m) for n, m in zip(image.shape[1:], cfg.size_multiple()) if n < m]
    if small:
        raise UserError(f"{source}: image of spatial shape {image.shape[1:]} is smaller than the model's minimum "
                        f"{cfg.size_multiple()}; use a larger field of view")
    if pixel_size_um and bundle.pixel_size_um:
        ratio = pixel_size_um / bundle.pixel_size_um
        if abs(ratio - 1) > PIXEL_SIZE_TOLERANCE:
            raise UserError(f"{source}: pixel size {pixel_size_um:g} µm but the model was trained at "
                            f"{bundle.pixel_size_um:g} µm; rescale the image by {ratio:.3g} first, or retrain")
    _check_acquisition(bundle.acquisition, description or {}, source)


def _check_acquisition(trained: dict, image: dict, source: str) -> None:
    binning = (image.get("binning"), trained.get("binning"))
    if None not in binning and binning[0] != binning[1]:
        raise UserError(f"{source}: the image was binned {binning[0]}× but the model was trained on "
                        f"{binning[1]}×-binned images; use images binned {binning[1]}× or a model trained for "
                        f"{binning[0]}×")
    wavelength = (image.get("wavelength_um"), trained.get("wavelength_um"))
    if None not in wavelength and isinstance(wavelength[1], (int, float)) \
            and abs(wavelength[0] / wavelength[1] - 1) > PIXEL_SIZE_TOLERANCE:
        raise UserError(f"{source}: wavelength {wavelength[0]:g} µm but the model was trained at {wavelength[1]:g} µm; "
                        "the phase of a defocused intensity depends on λ — retrain for this wavelength")
    for key, unit in (("defocus_um", " µm"), ("coherence", "")):
        value, span = image.get(key), trained.get(key)
        if isinstance(value, (int, float)) and span is not None:
            lo, hi = (span, span) if isinstance(span, (int, float)) else span
            if not lo - 1e-9 <= value <= hi + 1e-9:
                seen = f"training value {lo:g}{unit}" if lo == hi else f"trained range {lo:g}…{hi:g}{unit}"
                warnings.warn(f"{source}: {key} {value:g}{unit} is outside the model's {seen}; expect lower "
                              "accuracy (see the generalisation tables), or train over this range", stacklevel=3)


def predict(bundle: ModelBundle, image: np.ndarray, *, tile_size: int | Sequence[int] | None = None,
            tta: bool = False, device: str | None = None, memory_budget_mb: float | None = None, amp: bool = False,
            source: str = "<array>", pixel_size_um: float | None = None, progress: bool = False,
            match_brightness: bool = False, description: dict | None = None) -> np.ndarray:
    """Predict the target channels for one image.

    Parameters
    ----------
    bundle : ModelBundle
        A loaded model (see :func:`virtualstain.load_model`).
    image : numpy.ndarray
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` in the input's raw units, channels as in training.
    tile_size : int, sequence of int or None
        Tile core size in YX pixels; 0 = whole image; None = chosen from the memory budget.
    tta : bool
        Average over the 8 flips/rotations in YX (test-time augmentation).
    device : str, optional
        ``"cpu"``, ``"cuda"``…; default CUDA when available.
    memory_budget_mb : float, optional
        Memory for one tile (default 1024 MB on CPU, half the free GPU memory on CUDA).
    amp : bool
        float16 autocast on CUDA.
    source : str
        Name used in error messages.
    pixel_size_um : float, optional
        The image's pixel size, checked against the model's.
    description : dict, optional
        The image file's metadata (binning, wavelength, defocus…), checked by :func:`check_input`.
    match_brightness : bool
        Scale each input channel so that its mean equals the training inputs' mean (DL-SRQPI's
        brightness correction C = R·S̄/R̄): for bright-field images taken with another lamp power,
        exposure or gain than the training data.

    Returns
    -------
    numpy.ndarray
        ``(C_out, ...)`` float32 prediction in the target's units.
    """
    image = np.asarray(image, np.float32)
    check_input(bundle, image, source, pixel_size_um, description)
    if match_brightness:
        image = _match_brightness(bundle, image, source)
    dev = pick_device(device)
    net = bundle.inference_network(dev)
    normalized = bundle.input_normalizer(image)
    transforms = dihedral_transforms() if tta else [(0, False)]
    total = 0.0
    for k, flip in transforms:
        view = np.ascontiguousarray(apply_transform(normalized, k, flip))
        padded, spatial = pad_to_multiple(view, bundle.config.size_multiple())
        tile = resolve_tile(bundle, tile_size, dev, memory_budget_mb, padded.shape[1:])
        bar = None
        if progress:
            n = count_tiles(padded.shape[1:], bundle.config, tile)
            bar = tqdm(total=n, desc="tiles", leave=False, disable=n < 2)
        out = predict_padded(net, padded, tile, dev, amp=amp, progress=bar)
        if bar is not None:
            bar.close()
        out = out[(slice(None),) + tuple(slice(0, n * f) for n, f in zip(spatial, output_scale(bundle.config)))]
        total = total + apply_transform(out, k, flip, inverse=True)
    return bundle.target_normalizer.inverse(total / len(transforms))


def _match_brightness(bundle: ModelBundle, image: np.ndarray, source: str) -> np.ndarray:
    means = bundle.info.get("training", {}).get("input_mean")
    if not means:
        raise UserError(f"{source}: the model records no training input mean (trained by an older virtualstain); "
                        "retrain it, or leave out --match-brightness")
    means_now = image.reshape(image.shape[0], -1).mean(axis=1)
    if (means_now <= 0).any():
        raise UserError(f"{source}: --match-brightness needs a positive mean grey level in every channel "
                        f"(means {means_now.tolist()}); subtract no offset that makes it ≤ 0")
    shape = (-1,) + (1,) * (image.ndim - 1)
    return (image * (np.asarray(means, np.float32).reshape(shape) / means_now.reshape(shape))).astype(np.float32)


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


def output_path(out_dir: Path, input_path: Path) -> Path:
    """Outputs keep the input's file name (as ``.tif``)."""
    name = input_path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out_dir / f"{name}.tif"


def predict_files(model: ModelBundle | str | os.PathLike, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  *, input_channels: list[int] | None = None, tile_size: int | None = None, tta: bool = False,
                  overwrite: bool = False, composite: bool = False, device: str | None = None,
                  memory_budget_mb: float | None = None, amp: bool = False, progress: bool = True,
                  match_brightness: bool = False) -> list[Path]:
    """Predict many files; finished outputs are skipped unless ``overwrite``.

    Each output is a float32 OME-TIFF in the target's units named like its input, with
    the model's output channel names and the pixel size; ``composite=True`` adds a PNG.
    Inputs are checked before any work starts, so a bad file fails fast.

    Returns
    -------
    list of Path
        The output TIFFs (written now or already present).
    """
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model, device=pick_device(device))
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
    bar = tqdm(list(zip(paths, names)), desc="predict", unit="image", disable=not progress)
    for path, dest in bar:
        if dest.exists() and not overwrite:
            done.append(dest)
            continue
        image, meta = load_input(path, bundle.config.spatial_dims, channels,
                                 bundle.input_channel_names if input_channels is None else None)
        px = meta.pixel_size_um
        pred = predict(bundle, image, tile_size=tile_size, tta=tta, device=device, memory_budget_mb=memory_budget_mb,
                       amp=amp, source=str(path), pixel_size_um=px, progress=progress, match_brightness=match_brightness,
                       description=meta.description)
        out_px = (px or bundle.pixel_size_um or 0) / bundle.config.scale or None
        write_tiff(dest, pred, pixel_size_um=out_px, channel_names=bundle.output_channel_names,
                   description={"model": str(bundle.info.get("weights_sha256", ""))[:16], "source": path.name,
                                "units": "target"})
        if composite:
            write_composite(dest.with_suffix(".png"), image, pred)
        done.append(dest)
    return done
