"""The input check against the training domain: fitted when a model is trained, run on every prediction.

At training (:func:`fit_input_domain`) random tiles of the training regions give the reference of each descriptor
group and tiles of the validation regions (held out: the network never trained on them) calibrate the thresholds
(:mod:`virtualstain.analysis.input_domain`). At prediction (:func:`check_domain`) the image, resampled to the
model's grid and normalised as the network sees it, is cut into tiles and scored; :func:`warn_if_unfamiliar` warns
when more than :data:`WARN_FRACTION` of them lie outside, naming what differs and the fix.

The thresholds also see each of :data:`BLOCKS` spatial blocks of the training tiles scored against a reference fitted
on the other blocks: one validation strip alone would not show how much the parts of a field differ.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..analysis.input_domain import (
    TILE_PX,
    FeatureProjection,
    InputDomain,
    TileScores,
    cut_tiles,
    descriptor_names,
    image_descriptors,
    tile_corners,
)
from ..models.bundle import ModelBundle
from ..models.configs import NetworkConfig
from .bottleneck import bottleneck_features, find_bottleneck
from .rescale import model_grid_shape, resample_lateral, rescale_factor
from .tiling import pad_to_multiple

#: Training tiles behind the reference, and held-out tiles behind the thresholds (at most).
TRAIN_TILES, HELD_OUT_TILES = 512, 256
#: Spatial blocks of the training tiles, each scored against a reference fitted on the others.
BLOCKS = 4
#: Tiles scored per image for the warning (spread evenly); ``--ood-map`` scores all.
CHECK_TILES = 64
#: Share of an image's tiles outside the training domain above which :func:`warn_if_unfamiliar` warns.
WARN_FRACTION = 0.2


class UnfamiliarInputWarning(UserWarning):
    """An input unlike the images the model was trained on (see :mod:`virtualstain.inference.domain_check`)."""


def domain_tile_px(config: NetworkConfig) -> int:
    """The tile side: :data:`TILE_PX` rounded up to the network's size multiple in Y and X."""
    m = config.size_multiple()[-1]
    return m * math.ceil(TILE_PX / m)


def _random_corners(shape_yx: tuple[int, ...], tile: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    ny, nx = shape_yx
    if ny < tile or nx < tile or count < 1:
        return []
    return [(int(rng.integers(0, ny - tile + 1)), int(rng.integers(0, nx - tile + 1))) for _ in range(count)]


def _sample_tiles(arrays: list[np.ndarray], tile: int, total: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """About ``total`` random tiles from channels-first arrays, in proportion to their areas, and the spatial block
    of each: (array number + quarter of the array's longest axis the tile's centre lies in) mod :data:`BLOCKS`."""
    usable = [a for a in arrays if a.shape[-2] >= tile and a.shape[-1] >= tile]
    if not usable:
        return None
    areas = np.array([a.shape[-2] * a.shape[-1] for a in usable], float)
    counts = np.maximum(1, np.round(total * areas / areas.sum())).astype(int)
    tiles, blocks = [], []
    for i, (a, c) in enumerate(zip(usable, counts)):
        corners = _random_corners(a.shape[-2:], tile, int(c), rng)
        axis = int(np.argmax(a.shape[-2:]))
        length = a.shape[-2:][axis]
        blocks += [(i + min(BLOCKS - 1, int(BLOCKS * (yx[axis] + tile / 2) / length))) % BLOCKS for yx in corners]
        tiles.append(cut_tiles(a, corners, tile))
    return np.concatenate(tiles), np.asarray(blocks)


def _features(bundle: ModelBundle, module: str, tiles: np.ndarray) -> np.ndarray:
    multiple = bundle.config.size_multiple()
    if len(multiple) == 3 and tiles.shape[2] % multiple[0]:  # 3D: pad Z like a prediction does
        tiles = np.stack([pad_to_multiple(t, multiple)[0] for t in tiles])
    return bottleneck_features(bundle.network, module, tiles)


def _describe(bundle: ModelBundle, module: str, tiles: np.ndarray,
              projection: FeatureProjection | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    descriptors = image_descriptors(tiles)
    if not len(tiles):  # no held-out tile fits: the thresholds come from the training blocks alone
        k = len(projection.components) + 1 if projection else 0
        return {**descriptors, "features": np.zeros((0, k))}, np.zeros((0, 0))
    raw = _features(bundle, module, tiles)
    if projection is not None:
        descriptors["features"] = projection(raw)
    return descriptors, raw


def fit_input_domain(bundle: ModelBundle, train_inputs: list[np.ndarray], held_out_inputs: list[np.ndarray],
                     seed: int = 0) -> InputDomain | None:
    """Describe the training domain of ``bundle`` from normalised, channels-first input regions.

    Parameters
    ----------
    train_inputs, held_out_inputs : list of numpy.ndarray
        The training regions and the validation regions, normalised as the network saw them (model grid).
    seed : int
        Of the random tile positions.

    Returns
    -------
    InputDomain or None
        None when no training region holds a whole tile.
    """
    tile = domain_tile_px(bundle.config)
    rng = np.random.default_rng(seed)
    sampled = _sample_tiles(train_inputs, tile, TRAIN_TILES, rng)
    if sampled is None:
        return None
    train, blocks = sampled
    held_sampled = _sample_tiles(held_out_inputs, tile, HELD_OUT_TILES, rng)
    held = held_sampled[0] if held_sampled else train[:0]
    module = find_bottleneck(bundle.network, bundle.config.in_channels, tuple(train.shape[2:]))
    train_d, train_raw = _describe(bundle, module, train, None)
    projection = FeatureProjection.fit(train_raw)
    train_d["features"] = projection(train_raw)
    held_d, _ = _describe(bundle, module, held, projection)
    names = {**descriptor_names(bundle.input_channel_names), "features": projection.names()}
    return InputDomain.fit(train_d, blocks, held_d, names, tile, projection, module)


def check_domain(bundle: ModelBundle, image: np.ndarray, *, source: str = "<array>", pixel_size_um: float | None = None,
                 max_tiles: int | None = CHECK_TILES, rescale: bool = True) -> TileScores | None:
    """Score the tiles of a channels-first ``image`` (raw units) against the model's training domain.

    Parameters
    ----------
    source : str
        Name used in error messages.
    pixel_size_um : float, optional
        The image's pixel size; the image is resampled to the model's grid first, as :func:`predict` does.
    max_tiles : int or None
        Score at most this many tiles, spread evenly (None: every tile, for a map).

    Returns
    -------
    TileScores or None
        None when the model records no input domain (trained before the check existed) or the image is smaller
        than a tile. Tile corners are on the model's grid.
    """
    domain = bundle.input_domain
    if domain is None:
        return None
    image = np.asarray(image, np.float32)
    factor = rescale_factor(pixel_size_um, bundle.pixel_size_um, rescale, source, bundle.config.scale > 1)
    if factor is not None:
        image = resample_lateral(image, model_grid_shape(image.shape[-2:], factor))
    corners = tile_corners(image.shape[-2:], domain.tile_px, max_tiles)
    if not corners:
        return None
    tiles = cut_tiles(bundle.input_normalizer(image), corners, domain.tile_px)
    descriptors, _ = _describe(bundle, domain.feature_module, tiles, domain.projection)
    return domain.score(descriptors, corners)


def warn_if_unfamiliar(bundle: ModelBundle, scores: TileScores | None, source: str) -> bool:
    """Warn (:class:`UnfamiliarInputWarning`) when more than :data:`WARN_FRACTION` of the scored tiles lie outside
    the training domain; returns whether it warned."""
    if scores is None or bundle.input_domain is None or scores.fraction_outside <= WARN_FRACTION:
        return False
    warnings.warn(bundle.input_domain.warning(scores, source), UnfamiliarInputWarning, stacklevel=2)
    return True
