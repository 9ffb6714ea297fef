"""Apply a model bundle to an array of any size (tiled when needed), in the target's units."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.acquisition import TOLERANCE, Acquisition
from ..errors import UserError
from ..models.bundle import ModelBundle
from .options import PredictOptions
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

PIXEL_SIZE_TOLERANCE = TOLERANCE


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
                acquisition: Acquisition | None = None) -> None:
    """Check channels, size, pixel size and acquisition of a channels-first image against the model.

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
    if pixel_size_um and bundle.pixel_size_um:
        ratio = pixel_size_um / bundle.pixel_size_um
        if abs(ratio - 1) > PIXEL_SIZE_TOLERANCE:
            raise UserError(f"{source}: pixel size {pixel_size_um:g} µm but the model was trained at "
                            f"{bundle.pixel_size_um:g} µm; rescale the image by {ratio:.3g} first, or retrain")
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
        Tiling, test-time augmentation, device, memory budget, mixed precision, brightness matching.
    source : str
        Name used in error messages.
    pixel_size_um : float, optional
        The image's pixel size, checked against the model's.
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
    image = np.asarray(image, np.float32)
    check_input(bundle, image, source, pixel_size_um, acquisition)
    if opts.match_brightness:
        image = _match_brightness(bundle, image, source)
    dev = pick_device(opts.device)
    net = bundle.inference_network(dev)
    normalized = bundle.input_normalizer(image)
    transforms = dihedral_transforms() if opts.tta else [(0, False)]
    total: np.ndarray | float = 0.0
    for k, flip in transforms:
        view = np.ascontiguousarray(apply_transform(normalized, k, flip))
        padded, spatial = pad_to_multiple(view, bundle.config.size_multiple())
        tile = resolve_tile(bundle, opts.tile_size, dev, opts.memory_budget_mb, padded.shape[1:])
        bar = None
        if opts.progress:
            n = count_tiles(padded.shape[1:], bundle.config, tile)
            bar = tqdm(total=n, desc="tiles", leave=False, disable=n < 2)
        out = predict_padded(net, padded, tile, dev, amp=opts.amp, progress=bar)
        if bar is not None:
            bar.close()
        out = out[(slice(None),) + tuple(slice(0, n * f) for n, f in zip(spatial, output_scale(bundle.config)))]
        total = total + apply_transform(out, k, flip, inverse=True)
    assert isinstance(total, np.ndarray)  # at least the identity transform ran
    return bundle.target_normalizer.inverse(total / len(transforms))


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


