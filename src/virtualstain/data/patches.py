"""Random N-D patch sampling inside split regions, with a signal filter and augmentation (geometric on both
arrays; optionally intensity changes of the input, :mod:`~virtualstain.data.augmentation`).

For super-resolution pairs (``scale`` k) an input patch of p pixels is paired with the target
patch of k·p pixels covering the same field; regions and patch sizes are in input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.filters import threshold_otsu

from ..errors import UserError
from .augmentation import IntensityAugmentation
from .splits import Region, scale_slices


def signal_thresholds(targets: Sequence[np.ndarray]) -> np.ndarray:
    """Otsu threshold of each target channel over (subsampled) training targets."""
    n = targets[0].shape[0]
    out = []
    for c in range(n):
        values = np.concatenate([t[c].ravel()[:: max(1, t[c].size // 500_000)] for t in targets])
        out.append(threshold_otsu(values) if values.min() < values.max() else values.min())
    return np.asarray(out, dtype=np.float32)


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply the same random flip / rotation in the YX plane to both channels-first arrays.

    Square patches get one of the 8 flips/90° rotations. Non-square patches (``Y != X``, e.g.
    ``patch_size [64, 128]`` or a patch fitted to a thin region) are rotated by 0° or 180° only,
    so every patch of a batch keeps its shape; with the flip this still gives all 4 symmetries of a
    rectangle. The random stream is the same either way (one draw for the rotation, one for the flip).
    For super-resolution pairs (target ``k``× larger in Y and X) input and target are equally square or not,
    so both get the same transform.
    """
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    axes = (x.ndim - 2, x.ndim - 1)
    if x.shape[-2] != x.shape[-1] or y.shape[-2] != y.shape[-1]:
        k = 2 * (k // 2)  # 0, 1 → 0°; 2, 3 → 180°: uniform over the rotations that keep the shape
    x, y = np.rot90(x, k, axes=axes), np.rot90(y, k, axes=axes)
    if flip:
        x, y = np.flip(x, axis=-1), np.flip(y, axis=-1)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def fit_patch_size(patch_size: Sequence[int], regions: Sequence[Region], multiple: Sequence[int]) -> tuple[int, ...]:
    """Shrink ``patch_size`` to fit every region, keeping each axis a multiple of the network's.

    Raises
    ------
    UserError
        If a region is smaller than one network multiple along some axis.
    """
    if len(patch_size) != len(multiple):
        raise UserError(f"data.patch_size {list(patch_size)} has {len(patch_size)} values but the model has "
                        f"{len(multiple)} spatial axes; give (Y, X) for 2D or (Z, Y, X) for 3D")
    too_small = [(int(p), int(m)) for p, m in zip(patch_size, multiple) if not p >= m]
    if too_small:
        raise UserError(f"data.patch_size {list(patch_size)}: each value must be at least the network's size "
                        f"multiple {list(multiple)} (got {', '.join(f'{p} < {m}' for p, m in too_small)}); "
                        f"set data.patch_size to positive multiples of {list(multiple)} (default 128² in 2D)")
    smallest = [min(r.shape[a] for r in regions) for a in range(len(patch_size))]
    out = []
    for axis, (p, n, m) in enumerate(zip(patch_size, smallest, multiple)):
        size = (min(p, n) // m) * m
        if size < m:
            raise UserError(f"a training region is only {n} px along spatial axis {axis}, smaller than the network's "
                            f"minimum {m}; use larger images, fewer splits, or a shallower model (model.depth)")
        out.append(size)
    return tuple(out)


class PatchSampler:
    """Draw random patches from the training regions of normalised samples.

    Parameters
    ----------
    inputs, targets : list of numpy.ndarray
        Normalised channels-first arrays, indexed like the regions' ``sample``.
    regions : list of Region
        Where patches may come from; a patch lies entirely inside one region.
    patch_size : sequence of int
        Spatial patch shape, ``(Y, X)`` or ``(Z, Y, X)``; no larger than any region
        (see :func:`fit_patch_size`).
    min_signal_fraction : float
        Keep a patch only if at least this fraction of its target pixels exceeds the
        channel's Otsu threshold (any channel); 0 disables the filter.
    augment : bool
        Random flips and rotations in YX (90° steps for square patches, 180° otherwise; see :func:`augment`).
    scale : int
        Targets are ``scale``× larger than inputs in Y and X.
    intensity_augmentation : IntensityAugmentation, optional
        Random gain, offset, gamma, blur and noise applied to the input patch only, after the geometric
        augmentation, from the same generator. None (default): none, and the random stream is as without it.
    """

    def __init__(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], regions: Sequence[Region],
                 patch_size: Sequence[int], min_signal_fraction: float = 0.0, augment: bool = True,
                 max_tries: int = 20, scale: int = 1, intensity_augmentation: IntensityAugmentation | None = None):
        if not regions:
            raise UserError("no training regions to sample patches from; check the split settings")
        self.inputs, self.targets, self.regions = inputs, targets, list(regions)
        self.patch_size = tuple(int(p) for p in patch_size)
        for r in self.regions:
            if len(r.shape) != len(self.patch_size):
                raise UserError(f"patch_size {list(self.patch_size)} has {len(self.patch_size)} axes but the data has "
                                f"{len(r.shape)} spatial axes; set training.patch_size accordingly")
            if any(p > n for p, n in zip(self.patch_size, r.shape)):
                raise UserError(f"patch_size {list(self.patch_size)} does not fit in a training region of shape "
                                f"{list(r.shape)}; lower training.patch_size")
        weights = np.array([np.prod(r.shape) for r in self.regions], dtype=float)
        self.weights = weights / weights.sum()
        self.min_signal_fraction = float(min_signal_fraction)
        self.augment = augment
        self.max_tries = max_tries
        self.scale = int(scale)
        self.intensity_augmentation = intensity_augmentation
        self.thresholds = (signal_thresholds([targets[r.sample][r.slices(self.scale)] for r in self.regions])
                           if self.min_signal_fraction > 0 else None)

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        region = self.regions[int(rng.choice(len(self.regions), p=self.weights))]
        size = self.patch_size
        starts = [int(rng.integers(a, b - p + 1)) for (a, b), p in zip(region.bounds, size)]
        sl = (slice(None),) + tuple(slice(s, s + p) for s, p in zip(starts, size))
        return self.inputs[region.sample][sl], self.targets[region.sample][scale_slices(sl, self.scale)]

    def _has_signal(self, y: np.ndarray) -> bool:
        assert self.thresholds is not None  # sample() asks only when min_signal_fraction > 0
        shape = (-1,) + (1,) * (y.ndim - 1)
        frac = (y > self.thresholds.reshape(shape)).reshape(y.shape[0], -1).mean(axis=1)
        return bool((frac >= self.min_signal_fraction).any())

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One ``(input, target)`` patch pair, float32, channels-first."""
        x, y = self._draw(rng)
        if self.thresholds is not None:
            for _ in range(self.max_tries - 1):
                if self._has_signal(y):
                    break
                x, y = self._draw(rng)
        x, y = augment(x, y, rng) if self.augment else (np.ascontiguousarray(x), np.ascontiguousarray(y))
        if self.intensity_augmentation is not None:
            x = self.intensity_augmentation(x, rng)
        return x, y
