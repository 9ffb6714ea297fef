"""Apply a model bundle to an array of any size (tiled when needed), in the target's units."""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.acquisition import Acquisition
from ..data.io import as_float32
from ..errors import UserError
from ..models.bundle import ModelBundle
from ..models.receptive_field import tiling_margin
from .backend_choice import choose_engine
from .blending import count_windows, predict_blended
from .options import BLEND_TILE_PX, PredictOptions
from .rescale import model_grid_shape, resample_lateral, rescale_factor
from .tiling import (
    DEFAULT_CPU_BUDGET_MB,
    apply_transform,
    auto_tile_size,
    count_tiles,
    dihedral_transforms,
    mirror_margin,
    output_scale,
    pad_mirror,
    pad_to_multiple,
    predict_padded,
    tiles_for,
)


def available_devices() -> list[str]:
    """The devices this machine offers: ``cpu``, ``cuda:0``… and ``mps`` where present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given (checked against this machine), else CUDA when available, else CPU.

    Raises
    ------
    UserError
        ``device`` is not a device name, or this machine has no such device; the message lists those it has.
    """
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    available = available_devices()
    fix = f"available here: {', '.join(available)}; give one of them to --device, or leave --device out"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {device!r} is not a device name; {fix}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device!r}: no CUDA GPU is available (torch {torch.__version__}); {fix}")
        if dev.index is not None and dev.index >= count:
            raise UserError(f"--device {device!r}: this machine has {count} CUDA GPU(s) (cuda:0…cuda:{count - 1}); {fix}")
        return dev
    if dev.type == "mps" and "mps" in available:
        return dev
    raise UserError(f"--device {device!r}: not available on this machine; {fix}")


#: Warn when the tile margins make the network do more than this many times the work of the cores.
MAX_MARGIN_OVERHEAD = 4.0


def resolve_tile(bundle: ModelBundle, tile_size: int | Sequence[int] | None, device: torch.device,
                 memory_budget_mb: float | None, padded_spatial: Sequence[int], *,
                 warn: bool = True) -> tuple[int, ...] | None:
    """Tile core per axis: ``0`` → whole image, ``None`` → from the memory budget, int → that size in YX.

    Raises
    ------
    UserError
        A tile core smaller than the network's size multiple, or a memory budget that is not positive.
    Warns
    -----
    UserWarning
        (``warn``) When the margins around the tiles would cost more than :data:`MAX_MARGIN_OVERHEAD` times
        the work of the cores (tiles far smaller than the receptive field).
    """
    cfg = bundle.config
    if tile_size == 0:
        return None
    if tile_size is None:
        if memory_budget_mb is not None and not (memory_budget_mb > 0 and math.isfinite(memory_budget_mb)):
            raise UserError(f"--memory-mb {memory_budget_mb} must be a positive number of MB (e.g. 1024); leave it "
                            "out for the default (1 GB on CPU, half the free GPU memory on CUDA)")
        source = "--memory-mb"
        if memory_budget_mb is None:
            source = "the memory budget"
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                memory_budget_mb = 0.5 * free / 2 ** 20
            else:
                memory_budget_mb = DEFAULT_CPU_BUDGET_MB
        tile = auto_tile_size(cfg, memory_budget_mb, padded_spatial)
        fix = f"raise {source} ({memory_budget_mb:g} MB), or give --tile-size"
    else:
        if isinstance(tile_size, (int, numbers.Integral)):
            if tile_size < 0:
                raise UserError(f"--tile-size {tile_size} must be ≥ 0 (0 = whole image)")
            tile = tuple([10 ** 9] * (cfg.spatial_dims - 2) + [int(tile_size), int(tile_size)])
        else:
            tile = tuple(int(t) for t in tile_size)
            if len(tile) != cfg.spatial_dims:
                raise UserError(f"tile_size {list(tile)} has {len(tile)} values but the model is {cfg.spatial_dims}D")
        multiple = cfg.size_multiple()
        small = [(t, m) for t, m in zip(tile, multiple) if t < m]
        if small:
            raise UserError(f"--tile-size {tile_size}: a tile core must be at least the model's size multiple "
                            f"{list(multiple)} px (got {', '.join(f'{t} < {m}' for t, m in small)}); give a larger "
                            "--tile-size, 0 for the whole image, or leave it out to choose from the memory budget")
        fix = "give a larger --tile-size, or leave it out to choose tiles from the memory budget"
    if warn:
        overhead = tile_overhead(cfg, padded_spatial, tile)
        if overhead > MAX_MARGIN_OVERHEAD:
            warnings.warn(f"tiles of {list(tile[-2:])} px with margins of {list(tiling_margin(cfg))} px make the network "
                          f"do {overhead + 1:.1f}× the work of the image (the margins {overhead:.1f}× the cores); "
                          f"{fix}", UserWarning, stacklevel=3)
    return tile


def tile_overhead(config, padded_spatial: Sequence[int], tile: Sequence[int] | None) -> float:
    """Work of the tiles' margins relative to the work of their cores (0 when predicted whole)."""
    if tile is None or all(t >= n for t, n in zip(tile, padded_spatial)):
        return 0.0
    windows = sum(math.prod(w1 - w0 for w0, w1, _, _ in bounds) for bounds in tiles_for(padded_spatial, config, tile))
    return windows / math.prod(padded_spatial) - 1.0


def check_input(bundle: ModelBundle, image: np.ndarray, source: str, acquisition: Acquisition | None = None) -> None:
    """Check channels, size and acquisition of a channels-first image (on the model's grid) against the model.

    ``acquisition`` comes from the image file's metadata: a ``binning`` or ``wavelength_um`` other than
    the training data's is refused (a super-resolution model learns one binning); a ``defocus_um`` or
    ``coherence`` outside the trained range gives a warning (:meth:`Acquisition.check_image`).

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
    bundle.acquisition.check_image(acquisition or Acquisition(), source)


def predict(bundle: ModelBundle, image: np.ndarray, options: PredictOptions | None = None, *,
            source: str = "<array>", pixel_size_um: float | None = None, acquisition: Acquisition | None = None,
            **option_changes) -> np.ndarray:
    """Predict the target channels for one image.

    Parameters
    ----------
    bundle : ModelBundle
        A loaded model (see :func:`virtualstain.load_model`).
    image : numpy.ndarray
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` in the input's raw units, channels as in training.
    options : PredictOptions, optional
        Tiling, test-time augmentation, device, backend and precision, memory budget, brightness matching, border.
    source : str
        Name used in error messages.
    pixel_size_um : float, optional
        The image's pixel size (µm). When it differs from the model's, the image is resampled to the model's grid
        and the prediction back (:mod:`~virtualstain.inference.rescale`; ``rescale=False`` refuses instead).
    acquisition : Acquisition, optional
        The image file's acquisition metadata (binning, wavelength, defocus…), checked by :func:`check_input`.
    **option_changes
        Any :class:`PredictOptions` field by name (``tile_size=0``, ``tta=True``…), applied on top of ``options``.

    Returns
    -------
    numpy.ndarray
        ``(C_out, ...)`` float32 prediction in the target's units (``scale``× larger in Y and X for a
        super-resolution model).
    """
    opts = (options or PredictOptions()).replace(**option_changes)
    return _run(bundle, image, opts, source, pixel_size_um, acquisition)[0]


def predict_with_uncertainty(bundle: ModelBundle, image: np.ndarray, options: PredictOptions | None = None, *,
                             source: str = "<array>", pixel_size_um: float | None = None,
                             acquisition: Acquisition | None = None, **option_changes) -> tuple[np.ndarray, np.ndarray]:
    """The prediction with test-time augmentation and its per-pixel standard deviation σ.

    σ² is the variance of the 8 flipped/rotated predictions (averaged over the ensemble's members) plus, for an
    ensemble (``train --ensemble K``), the variance of the members' TTA means; σ is then multiplied by the model's
    calibration factor per channel (``bundle.uncertainty``, fitted at training so that 68 % of held-out errors lie
    within 1σ; factor 1 for a model without one), in the target's units. The prediction is the mean over the
    members (for one network: its TTA prediction). Parameters as :func:`predict`; ``tta`` is always on.

    Returns
    -------
    prediction, sigma : numpy.ndarray
        Both ``(C_out, ...)`` float32, on the prediction's grid.
    """
    opts = (options or PredictOptions()).replace(**option_changes).replace(tta=True)
    means, variances = [], []
    for member in ensemble_views(bundle):
        mean, spread = _run(member, image, opts, source, pixel_size_um, acquisition)
        means.append(mean)
        variances.append(spread.astype(np.float64) ** 2)
    names = bundle.output_channel_names
    factors = bundle.uncertainty.factors(names) if bundle.uncertainty else [1.0] * len(names)
    shape = (-1,) + (1,) * (means[0].ndim - 1)
    units = np.asarray(bundle.target_normalizer.scale, np.float64).reshape(shape)
    prediction = np.mean(means, axis=0).astype(np.float32)
    variance = np.mean(variances, axis=0) * units ** 2 + (np.var(np.asarray(means, np.float64), axis=0)
                                                           if len(means) > 1 else 0.0)
    return prediction, (np.sqrt(variance) * np.asarray(factors).reshape(shape)).astype(np.float32)


def ensemble_views(bundle: ModelBundle) -> list[ModelBundle]:
    """The bundle once per ensemble member (itself first), each predicting with its own network; cached on the
    bundle. A member's engines are keyed by its own weights (its ``weights_sha256`` is left empty)."""
    views = bundle.runners.get("ensemble_views")
    if views is None or len(views) != 1 + len(bundle.members):
        views = [bundle] + [dataclasses.replace(bundle, network=m, members=[], weights_sha256="", runners={},
                                                _inference={}) for m in bundle.members]
        bundle.runners["ensemble_views"] = views
    return views


def _run(bundle: ModelBundle, image: np.ndarray, opts: PredictOptions, source: str, pixel_size_um: float | None,
         acquisition: Acquisition | None) -> tuple[np.ndarray, np.ndarray]:
    """(prediction in target units, TTA spread in normalised target units), both on the image's grid."""
    image = as_float32(np.asarray(image), source)
    factor = rescale_factor(pixel_size_um, bundle.pixel_size_um, opts.rescale, source, bundle.config.scale > 1)
    original = image.shape[-2:]
    if factor is not None and image.ndim == bundle.config.spatial_dims + 1:
        image = resample_lateral(image, model_grid_shape(original, factor))
    check_input(bundle, image, source, acquisition)
    try:
        moments = _predict_moments(bundle, image, opts, source)
    except MemoryError:
        raise _out_of_memory(source, image, opts) from None
    except RuntimeError as exc:  # torch: "DefaultCPUAllocator: can't allocate memory", torch.OutOfMemoryError on CUDA
        text = str(exc).lower()
        if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in text or "out of memory" in text:
            raise _out_of_memory(source, image, opts) from None
        raise
    if factor is None:
        return moments
    k = bundle.config.scale
    shape = (original[0] * k, original[1] * k)
    return resample_lateral(moments[0], shape), resample_lateral(moments[1], shape)


def _out_of_memory(source: str, image: np.ndarray, opts: PredictOptions) -> UserError:
    gib = image.size * 4 / 2 ** 30
    tiles = "tiles from --tile-size" if opts.tile_size else "tiles from the memory budget"
    return UserError(f"{source}: ran out of memory predicting an image of shape {tuple(image.shape)} ({gib:.2f} GiB as "
                     f"float32, with {tiles}); give a smaller --memory-mb or --tile-size (e.g. 512), or cut the image "
                     "into smaller fields")


def _predict_moments(bundle: ModelBundle, image: np.ndarray, opts: PredictOptions,
                     source: str) -> tuple[np.ndarray, np.ndarray]:
    """The prediction (target units) averaged over the TTA transforms and their standard deviation (normalised
    target units; zeros without TTA)."""
    if opts.match_brightness:
        image = _match_brightness(bundle, image, source)
    dev = pick_device(opts.device)
    normalized = bundle.input_normalizer(image)
    engine = None
    transforms = dihedral_transforms() if opts.tta else [(0, False)]
    total: np.ndarray | float = 0.0
    squares: np.ndarray | float = 0.0
    shifted: np.ndarray | float = 0.0
    first: np.ndarray | None = None
    margin = mirror_margin(bundle.config) if opts.border == "mirror" else (0,) * bundle.config.spatial_dims
    for k, flip in transforms:
        view = np.ascontiguousarray(apply_transform(normalized, k, flip))
        padded, _ = pad_to_multiple(pad_mirror(view, margin), bundle.config.size_multiple())
        if engine is None:
            engine, _ = choose_engine(bundle, padded, dev, opts.backend, opts.precision, opts.max_deviation)
        tile = resolve_tile(bundle, opts.tile_size, dev, opts.memory_budget_mb, padded.shape[1:],
                            warn=(k, flip) == transforms[0] and opts.stitch == "exact")
        if opts.stitch == "blend":  # windows of --tile-size, else of the budget's tiles, at most BLEND_TILE_PX
            base = tile or padded.shape[1:]
            windows = tuple(base) if opts.tile_size else tuple(min(t, BLEND_TILE_PX) for t in base)
        bar = None
        if opts.progress:
            n = (count_windows(padded.shape[1:], bundle.config, windows, opts.blend_overlap) if opts.stitch == "blend"
                 else count_tiles(padded.shape[1:], bundle.config, tile))
            bar = tqdm(total=n, desc="tiles", leave=False, disable=n < 2)
        if opts.stitch == "blend":
            out = predict_blended(engine, padded, windows, opts.blend_overlap, progress=bar)
        else:
            out = predict_padded(engine, padded, tile, progress=bar)
        if bar is not None:
            bar.close()
        out = out[(slice(None),) + tuple(slice(g * f, (g + n) * f)
                                         for g, n, f in zip(margin, view.shape[1:], output_scale(bundle.config)))]
        back = apply_transform(out, k, flip, inverse=True)
        total = total + back
        if len(transforms) > 1:  # moments about the first transform's output: no cancellation for small spreads
            first = back if first is None else first
            offset = back.astype(np.float64) - first
            shifted, squares = shifted + offset, squares + offset ** 2
    assert isinstance(total, np.ndarray)  # at least the identity transform ran
    mean = total / len(transforms)
    n = len(transforms)
    spread = np.sqrt(np.maximum(squares / n - (shifted / n) ** 2, 0.0)).astype(np.float32) if n > 1 \
        else np.zeros_like(mean)
    return bundle.target_normalizer.inverse(mean), spread


def _match_brightness(bundle: ModelBundle, image: np.ndarray, source: str) -> np.ndarray:
    means = bundle.training.input_mean
    if not means:
        raise UserError(f"{source}: the model records no training input mean (trained by an older virtualstain); "
                        "retrain it, or leave out --match-brightness")
    means_now = image.reshape(image.shape[0], -1).mean(axis=1)
    if (means_now <= 0).any():
        raise UserError(f"{source}: --match-brightness needs a positive mean grey level in every channel "
                        f"(means {means_now.tolist()}); subtract no offset that makes it ≤ 0")
    shape = (-1,) + (1,) * (image.ndim - 1)
    return (image * (np.asarray(means, np.float32).reshape(shape) / means_now.reshape(shape))).astype(np.float32)


