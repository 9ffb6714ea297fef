"""Tiled inference: crop-and-stitch with a margin ≥ the receptive field.

With ``border="mirror"`` (:class:`~virtualstain.inference.options.PredictOptions`) the image is
first reflect-padded in Y and X on both sides by :func:`mirror_margin` pixels, so that pixels near
its edges see mirrored image content instead of the network's zero padding (PICS mirrors 32 px);
the prediction is cropped back afterwards. The image is then reflect-padded to the
network's size multiple; tiles are windows of that padded image whose cores partition it and
whose margins (≥ the exact receptive-field reach, rounded to the size multiple) are cut away
after prediction. Because every window starts on the downsampling grid and every core pixel
sees all of its receptive field, the stitched result equals whole-image prediction up to float
rounding, for any shape.
Super-resolution networks (``config.scale`` k) are tiled in input pixels; each window's
prediction is k× larger and its core lands at k× the core's input position.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..models.configs import NetworkConfig
from ..models.receptive_field import tiling_margin
from .engines import Engine

DEFAULT_CPU_BUDGET_MB = 1024
#: Largest mirror margin (input px per side, before rounding up to the size multiple). The exact reach
#: of ``pics`` (138 px, margin 144) would make a 512² field 2.4× the work; 64 px make it 1.56× (2048²:
#: 1.13×). On the FRM field (512², ``pics`` trained 10 epochs) the 4 px along the edges then differ from
#: the exact mirror by at most 3.8 % of the output range (mean 0.05 %); 32 px (as PICS pads) leave 16 %
#: (0.5 %), the network's zero padding 79 % (13 %).
MIRROR_MARGIN_PX = 64


def mirror_margin(config: NetworkConfig) -> tuple[int, ...]:
    """Mirrored pixels added on each side of each spatial axis ((Z,) Y, X) before prediction.

    In Y and X: the tiling margin (exact reach rounded up to the size multiple) or :data:`MIRROR_MARGIN_PX`
    rounded up to the size multiple, whichever is smaller; a multiple of the size multiple, so the image's
    pixels keep their place on the downsampling grid and pixels farther from every edge than the reach
    are predicted exactly as without the mirror. Z gets none: stacks are thin (with a 3D ``pics`` a
    13-plane stack would grow from 16 to 144 planes, 9× the work, every plane near an edge) and their
    first and last planes are where the acquisition ends, not a cut through a sample that goes on, as
    the lateral edges of a field are.
    """
    lateral = [min(g, -(-MIRROR_MARGIN_PX // m) * m) for g, m in zip(tiling_margin(config)[-2:], config.size_multiple()[-2:])]
    return (0,) * (config.spatial_dims - 2) + tuple(lateral)


def pad_mirror(image: np.ndarray, margin: Sequence[int]) -> np.ndarray:
    """Reflect-pad each spatial axis (after axis 0) by ``margin`` pixels on both sides.

    Reflection is about the edge pixel (numpy ``"reflect"``, folded again where the margin exceeds the
    axis); an axis of one pixel is repeated instead.
    """
    for axis, width in enumerate(margin, start=1):
        if width:
            pads = [(0, 0)] * image.ndim
            pads[axis] = (width, width)
            image = np.pad(image, pads, mode="reflect" if image.shape[axis] > 1 else "edge")
    return image


def pad_to_multiple(image: np.ndarray, multiple: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reflect-pad the spatial axes (after axis 0) at their ends up to a multiple.

    Returns the padded array and the original spatial shape (to crop back).
    """
    spatial = image.shape[1:]
    pads = [(0, 0)] + [(0, (-n) % m) for n, m in zip(spatial, multiple)]
    if any(p[1] for p in pads):
        mode: Literal["reflect", "edge"] = "reflect" if all(n > 1 for n, (_, p) in zip(spatial, pads[1:]) if p) else "edge"
        image = np.pad(image, pads, mode=mode)
    return image, tuple(spatial)


def _axis_cost(length: int, core: int, multiple: int, margin: int) -> tuple[int, int]:
    """(sum, max) of the window lengths along one axis for a given core size."""
    windows = [w1 - w0 for w0, w1, _, _ in _axis_tiles(length, core, multiple, margin)]
    return sum(windows), max(windows)


def auto_tile_size(config: NetworkConfig, budget_mb: float, spatial: Sequence[int]) -> tuple[int, ...]:
    """Tile cores for a padded image of shape ``spatial`` that fit ``budget_mb`` with the least work.

    Every grid of n₁ × n₂ (× n₃) tiles is scored by the total number of pixels the network must
    process (cores plus margins) among those whose largest window fits the memory budget; the
    cheapest wins, so a 2048² image under a 1 GB budget becomes two 2048×1136 windows (1.11× the
    whole-image work) rather than four squares (1.23×). If nothing fits, the smallest windows win.
    """
    margin = tiling_margin(config)
    mult = config.size_multiple()
    budget_px = budget_mb * 2 ** 20 / config.bytes_per_pixel()
    options = []  # per axis: arrays of (core, sum of windows, max window)
    for n, m, g in zip(spatial, mult, margin):
        cores = sorted({math.ceil(n / k / m) * m for k in range(1, n // m + 1)}, reverse=True)
        costs = np.array([_axis_cost(n, c, m, g) for c in cores], dtype=np.float64)
        options.append((np.array(cores), costs[:, 0], costs[:, 1]))
    total = np.ones([len(o[0]) for o in options])
    largest = np.ones_like(total)
    for axis, (_, sums, maxima) in enumerate(options):
        shape = [1] * len(options)
        shape[axis] = -1
        total = total * sums.reshape(shape)
        largest = largest * maxima.reshape(shape)
    fits = largest <= budget_px
    choice = np.unravel_index(np.argmin(np.where(fits, total, np.inf)) if fits.any() else np.argmin(largest),
                              total.shape)
    return tuple(int(o[0][i]) for o, i in zip(options, choice))


def _axis_tiles(length: int, core: int, multiple: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(window_start, window_stop, core_start, core_stop) along one axis of the padded image."""
    n = max(1, math.ceil(length / core))
    step = math.ceil(length / n / multiple) * multiple
    tiles = []
    for start in range(0, length, step):
        stop = min(start + step, length)
        tiles.append((max(0, start - margin), min(length, stop + margin), start, stop))
    return tiles


def tile_grid(shape: Sequence[int], core: Sequence[int], multiple: Sequence[int], margin: Sequence[int]):
    """All tiles of a padded spatial ``shape``: lists of per-axis (window, core) bounds."""
    per_axis = [_axis_tiles(n, c, m, g) for n, c, m, g in zip(shape, core, multiple, margin)]
    return list(itertools.product(*per_axis))


def predict_padded(engine: Engine, padded: np.ndarray, tile: Sequence[int] | None, progress=None) -> np.ndarray:
    """Predict a padded channels-first array whole (``tile=None``) or tile by tile with ``engine``
    (any backend, :mod:`~virtualstain.inference.engines`)."""
    config = engine.config
    spatial = padded.shape[1:]
    if tile is None or all(t >= n for t, n in zip(tile, spatial)):
        return engine(padded)
    tiles = tiles_for(spatial, config, tile)
    k = output_scale(config)
    out = np.empty((config.out_channels, *(n * f for n, f in zip(spatial, k))), np.float32)
    for bounds in tiles:
        window = (slice(None),) + tuple(slice(w0, w1) for w0, w1, _, _ in bounds)
        pred = engine(np.ascontiguousarray(padded[window]))
        inner = (slice(None),) + tuple(slice(f * (c0 - w0), f * (c1 - w0)) for (w0, _, c0, c1), f in zip(bounds, k))
        dest = (slice(None),) + tuple(slice(f * c0, f * c1) for (_, _, c0, c1), f in zip(bounds, k))
        out[dest] = pred[inner]
        if progress is not None:
            progress.update(1)
    return out


def output_scale(config: NetworkConfig) -> tuple[int, ...]:
    """Output pixels per input pixel along each spatial axis ((Z,) Y, X)."""
    return (1,) * (config.spatial_dims - 2) + (config.scale, config.scale)


def count_tiles(spatial: Sequence[int], config: NetworkConfig, tile: Sequence[int] | None) -> int:
    """How many windows :func:`predict_padded` will run for a padded ``spatial`` shape."""
    if tile is None or all(t >= n for t, n in zip(tile, spatial)):
        return 1
    return len(tiles_for(spatial, config, tile))


def tiles_for(spatial: Sequence[int], config: NetworkConfig, tile: Sequence[int]):
    """The tile grid for requested core sizes ``tile`` (rounded down to the size multiple, at least one)."""
    mult = config.size_multiple()
    core = [max(m, (int(t) // m) * m) for t, m in zip(tile, mult)]
    return tile_grid(spatial, core, mult, tiling_margin(config))


def dihedral_transforms() -> list[tuple[int, bool]]:
    """The 8 (rot90 k, flip X) pairs acting in the YX plane (test-time augmentation; Z is never rotated)."""
    return [(k, f) for k in range(4) for f in (False, True)]


def apply_transform(array: np.ndarray, k: int, flip: bool, inverse: bool = False) -> np.ndarray:
    """Rotate by k·90° in YX and optionally flip X (or undo that)."""
    axes = (array.ndim - 2, array.ndim - 1)
    if not inverse:
        out = np.rot90(array, k, axes=axes)
        return np.flip(out, -1) if flip else out
    out = np.flip(array, -1) if flip else array
    return np.rot90(out, -k, axes=axes)
