"""Alpha-blended stitching (VirFluoNet's), offered next to the exact tiling of :mod:`~virtualstain.inference.tiling`.

The padded image is cut into windows of ``tile`` pixels that overlap their neighbours by ``overlap`` pixels (window
starts on the network's size multiple); every window is predicted on its own — its pixels near a window edge see
the network's zero padding instead of the image beyond, unlike exact tiling, whose margins cover the receptive
field — and the predictions are blended with separable linear ramps (alpha) across each overlap:

    out(p) = Σ_w α_w(p) · pred_w(p) / Σ_w α_w(p),    α_w = Π_axes min(1, (d + ½) / overlap),

with d the distance (px) of p from window w's edge along that axis on the sides that face another window (image
edges get weight 1). The ramps hide seams but do not remove the error of windows that see too little context:
blending equals whole-image prediction only for a network whose receptive field fits in the overlap (e.g. the
identity), while exact tiling equals it for every network (tested in ``tests/test_blending.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .engines import Engine
from .tiling import output_scale


def window_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Starts of windows of ``tile`` px covering ``length`` px with ≥ ``overlap`` px shared by neighbours, each a
    multiple of ``multiple`` (the last one ends at ``length``; ``length`` and ``tile`` are multiples of it)."""
    if tile >= length:
        return [0]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def ramp(length: int, start: int, tile: int, overlap: int) -> np.ndarray:
    """Alpha of one window along one axis (``tile`` values): a linear ramp over ``overlap`` px on each side that
    faces another window (not at the image's ends, 0 and ``length``)."""
    d = np.arange(tile, dtype=np.float64)
    alpha = np.ones(tile)
    if overlap > 0 and start > 0:
        alpha = np.minimum(alpha, (d + 0.5) / overlap)
    if overlap > 0 and start + tile < length:
        alpha = np.minimum(alpha, (tile - d - 0.5) / overlap)
    return alpha


def predict_blended(engine: Engine, padded: np.ndarray, tile: Sequence[int], overlap: int,
                    progress=None) -> np.ndarray:
    """Predict a padded channels-first array window by window and alpha-blend the overlaps (see the module).

    Parameters
    ----------
    engine : Engine
        The network on a backend (:mod:`~virtualstain.inference.engines`; its ``config`` gives the size multiple
        and output channels).
    padded : numpy.ndarray
        ``(C, (Z,) Y, X)``, each spatial axis a multiple of the size multiple.
    tile : sequence of int
        Window size per spatial axis (input px), rounded down to the size multiple (at least one).
    overlap : int
        Pixels shared by neighbouring windows (≥ 0), the width of the ramps.
    """
    config = engine.config
    mult, k = config.size_multiple(), output_scale(config)
    spatial = padded.shape[1:]
    sizes = [min(n, max(m, int(t) // m * m)) for n, t, m in zip(spatial, tile, mult)]
    starts = [window_starts(n, t, overlap, m) for n, t, m in zip(spatial, sizes, mult)]
    out_shape = tuple(n * f for n, f in zip(spatial, k))
    total = np.zeros((config.out_channels, *out_shape), np.float64)
    weight = np.zeros(out_shape, np.float64)
    for corner in np.ndindex(*(len(s) for s in starts)):
        origin = [s[i] for s, i in zip(starts, corner)]
        window = (slice(None),) + tuple(slice(o, o + t) for o, t in zip(origin, sizes))
        pred = engine(np.ascontiguousarray(padded[window]))
        alpha = np.ones((), np.float64)
        for axis, (n, o, t, f) in enumerate(zip(spatial, origin, sizes, k)):
            a = ramp(n * f, o * f, t * f, overlap * f)
            alpha = np.multiply.outer(alpha, a) if axis else a
        dest = tuple(slice(o * f, (o + t) * f) for o, t, f in zip(origin, sizes, k))
        total[(slice(None),) + dest] += alpha * pred
        weight[dest] += alpha
        if progress is not None:
            progress.update(1)
    return (total / weight).astype(np.float32)


def count_windows(spatial: Sequence[int], config, tile: Sequence[int], overlap: int) -> int:
    """How many windows :func:`predict_blended` runs for a padded ``spatial`` shape."""
    mult = config.size_multiple()
    sizes = [min(n, max(m, int(t) // m * m)) for n, t, m in zip(spatial, tile, mult)]
    return int(np.prod([len(window_starts(n, t, overlap, m)) for n, t, m in zip(spatial, sizes, mult)]))
