"""Train/validation/test splits that never leak.

Whole groups (wells, fields) go to one split. When there are too few groups for
three splits, every field of view is cut spatially into whole, non-overlapping
regions along its longest lateral axis: train, then validation, then test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .samples import Sample


def scale_slices(slices: tuple[slice, ...], scale: int) -> tuple[slice, ...]:
    """Multiply the Y and X slices (the last two) by ``scale``; the others are kept."""
    if scale == 1:
        return slices
    return tuple(slices[:-2]) + tuple(slice(sl.start * scale, sl.stop * scale) for sl in slices[-2:])


@dataclass(frozen=True)
class Region:
    """A split's share of one sample.

    Attributes
    ----------
    sample : int
        Index into the list of samples.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    bounds : tuple of (int, int)
        ``(start, stop)`` in pixels for every spatial axis (Y, X) or (Z, Y, X).
    """

    sample: int
    split: str
    bounds: tuple[tuple[int, int], ...]

    def slices(self, scale: int = 1) -> tuple[slice, ...]:
        """Slices over the channels-first array: ``(:, z?, y, x)``; ``scale`` k gives the region in an
        array k× larger in Y and X (the target of a super-resolution pair; bounds are input pixels)."""
        return scale_slices((slice(None),) + tuple(slice(a, b) for a, b in self.bounds), scale)

    def centre_crop(self, max_size: int, scale: int = 1) -> tuple[slice, ...]:
        """Like :meth:`slices`, but Y and X cut to at most ``max_size`` input pixels around the region's centre."""
        sl = list(self.slices())
        for axis in (-2, -1):
            a, b = self.bounds[axis]
            if b - a > max_size:
                start = a + (b - a - max_size) // 2
                sl[axis] = slice(start, start + max_size)
        return scale_slices(tuple(sl), scale)

    def crop(self, sample: Sample, max_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The region's ``(input, target)`` arrays of ``sample``; the target at the sample's ``scale``
        (the same field, k× larger). With ``max_size``, Y and X are centre-cropped to at most that many
        input pixels (:meth:`centre_crop`)."""
        window = self.slices() if max_size is None else self.centre_crop(max_size)
        return sample.input[window], sample.target[scale_slices(window, sample.scale)]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.bounds)

    def to_dict(self) -> dict:
        return {"sample": self.sample, "split": self.split, "bounds": [list(b) for b in self.bounds]}


@dataclass
class SplitPlan:
    """Regions for every split and how they were chosen (``mode``: explicit, groups or spatial)."""

    regions: list[Region]
    mode: str
    description: str

    def of(self, split: str) -> list[Region]:
        return [r for r in self.regions if r.split == split]


def _whole(i: int, s: Sample, split: str) -> Region:
    return Region(i, split, tuple((0, n) for n in s.spatial_shape))


def spatial_regions(i: int, sample: Sample, fractions: dict[str, float]) -> list[Region]:
    """Cut one sample into consecutive regions along its longest lateral axis (X on ties).

    Parameters
    ----------
    fractions : dict
        Split name → fraction of the axis, in order (e.g. train 0.6, val 0.15, test 0.25).
    """
    shape = sample.spatial_shape
    lateral = [len(shape) - 1, len(shape) - 2]  # X first: a square field is split left | right
    axis = max(lateral, key=lambda a: shape[a])
    n = shape[axis]
    edges = np.round(np.cumsum([0.0] + list(fractions.values())) / sum(fractions.values()) * n).astype(int)
    regions = []
    for (split, _), a, b in zip(fractions.items(), edges[:-1], edges[1:]):
        if b <= a:
            continue
        bounds = [(0, m) for m in shape]
        bounds[axis] = (int(a), int(b))
        regions.append(Region(i, split, tuple(bounds)))
    return regions


def plan_splits(samples: list[Sample], val_fraction: float = 0.15, test_fraction: float = 0.25,
                seed: int = 0) -> SplitPlan:
    """Decide which data trains, validates and tests.

    * If samples carry explicit splits, they are used; with no validation rows,
      the last ``val_fraction`` of each training field (along its longest axis) validates.
    * Otherwise, with three or more groups, whole groups are shuffled (``seed``) into
      test (``test_fraction``), validation (``val_fraction``) and train.
    * Otherwise every field is cut spatially: train | val | test along its longest axis.
    """
    if not samples:
        raise UserError("the dataset is empty; give at least one input/target pair")
    explicit = [s.split for s in samples]
    if any(explicit):
        if not all(explicit):
            missing = [s.source for s in samples if not s.split][:3]
            raise UserError(f"some rows have a split and others do not (e.g. {missing}); fill in the split column for "
                            "every row, or leave it empty everywhere to split automatically")
        if "train" not in explicit:
            raise UserError("the manifest has no training rows (split=train); mark at least one row split=train")
        regions: list[Region] = []
        has_val = "val" in explicit
        for i, s in enumerate(samples):
            if s.split == "train" and not has_val:
                regions += spatial_regions(i, s, {"train": 1 - val_fraction, "val": val_fraction})
            else:
                assert s.split  # every row has one (checked above)
                regions.append(_whole(i, s, s.split))
        note = "explicit splits from the manifest"
        if not has_val:
            note += f"; validation = last {val_fraction:.0%} of each training field along its longest axis"
        return SplitPlan(regions, "explicit", note)

    groups = sorted({s.group for s in samples})
    if len(groups) >= 3:
        rng = np.random.default_rng(seed)
        order = [groups[k] for k in rng.permutation(len(groups))]
        n_test = max(1, int(round(test_fraction * len(groups))))
        n_val = max(1, int(round(val_fraction * len(groups))))
        if n_test + n_val >= len(groups):
            n_test, n_val = 1, 1
        which = {g: "test" for g in order[:n_test]}
        which.update({g: "val" for g in order[n_test:n_test + n_val]})
        regions = [_whole(i, s, which.get(s.group, "train")) for i, s in enumerate(samples)]
        return SplitPlan(regions, "groups",
                         f"{len(groups)} groups shuffled with seed {seed}: {n_test} test, {n_val} val, "
                         f"{len(groups) - n_test - n_val} train")
    train_fraction = 1.0 - val_fraction - test_fraction
    if train_fraction <= 0:
        raise UserError(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves nothing to train on; "
                        "lower them in the config (split.val_fraction, split.test_fraction)")
    fractions = {"train": train_fraction, "val": val_fraction, "test": test_fraction}
    regions = []
    for i, s in enumerate(samples):
        regions += spatial_regions(i, s, fractions)
    return SplitPlan(regions, "spatial",
                     f"fewer than 3 fields/groups: each field cut spatially along its longest axis into "
                     f"train {train_fraction:.0%} | val {val_fraction:.0%} | test {test_fraction:.0%} "
                     "(whole regions, no overlapping patches)")
