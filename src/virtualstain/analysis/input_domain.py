"""How far an input lies from what a model saw in training: tile descriptors, their reference and a score.

An image (already normalised as the network sees it, channels first) is cut into square tiles of ``tile_px``
pixels in Y and X (any Z kept whole). Each tile is described by four groups of numbers, per input channel:

``brightness``  mean and median grey level;
``contrast``    the interquartile and 1–99 % ranges and the quantile skewness (p90 + p10 − 2·p50) / (p90 − p10)
                (in [−1, 1], robust to a single bright object; its sign flips when contrast is inverted);
``texture``     the share of the tile's power (mean-free, Hann-windowed, see :mod:`~virtualstain.metrics.spectrum`)
                in five radial frequency bands, as log10 — independent of gain, shifted by blur and pixel size —
                and log10 of the pixel noise σ (the median absolute deviation of neighbour differences along X
                over 0.6745·√2), which interpolation (another pixel size) and blur lower;
``features``    the network's own view: its bottleneck activations averaged over the tile
                (:mod:`virtualstain.inference.bottleneck`), projected on their leading principal components over the
                training tiles, plus the log10 norm of what those components leave out.

The reference of a group is the mean ``μ`` and spread ``s`` of its numbers over training tiles and a shrunk
correlation ``R = (1 − λ) C + λ I`` (λ = :data:`SHRINKAGE`) of ``z = (d − μ) / s``. A tile's distance in a group is
the root-mean-square Mahalanobis distance ``D = sqrt(zᵀ R⁻¹ z / k)`` over its ``k`` numbers; its **ratio** is
``D / t`` with the threshold ``t`` = :data:`MARGIN` × the :data:`CALIBRATION_QUANTILE` quantile of ``D`` over
*held-out* tiles of the training domain: validation regions the network did not train on, and each spatial block of
the training tiles scored against a reference fitted on the other blocks. A tile is outside the training domain when its
ratio in any group exceeds 1; its score is the largest ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..metrics.spectrum import power_spectrum, radial_frequency

#: Groups of descriptors, in the order they are reported.
GROUPS = ("brightness", "contrast", "texture", "features")
#: Tile side (pixels in Y and X) unless the network needs a larger multiple.
TILE_PX = 64
#: Edges of the texture bands in cycles per pixel (the last band reaches the corners of the spectrum).
BAND_EDGES = (0.0, 0.04, 0.08, 0.16, 0.32, 0.75)
#: Shrinkage of each group's correlation toward the identity (keeps R invertible with few tiles).
SHRINKAGE = 0.1
#: Quantile of the held-out tiles' distances that, times :data:`MARGIN`, becomes a group's threshold.
CALIBRATION_QUANTILE = 0.995
#: A new field differs from the training fields by more than their parts differ among themselves (illumination
#: falls off toward the edges, density varies): the thresholds allow that much more.
MARGIN = 1.2
#: Principal components kept of the bottleneck features.
FEATURE_COMPONENTS = 8
#: Smallest spread of a descriptor (keeps z finite for numbers that are constant in training).
_MIN_SPREAD = 1e-6
_TINY = 1e-12

_FIX = {
    "brightness": "check exposure, gain and offset against the training images (or try --match-brightness)",
    "contrast": "check the modality and its settings (inverted contrast, another stain or illumination?)",
    "texture": "check focus and the pixel size (give the file's pixel size so the image is rescaled to the model's)",
    "features": "the network sees structures it was not trained on: fine-tune (train --init) on such images",
}


def tile_corners(shape_yx: tuple[int, int], tile: int, max_tiles: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners of ``tile``-pixel tiles covering a ``(Y, X)`` image (the last row and column flush with
    the edges), evenly thinned to at most ``max_tiles``; [] when the image is smaller than a tile."""
    ny, nx = shape_yx
    if ny < tile or nx < tile:
        return []
    ys = sorted({*range(0, ny - tile + 1, tile), ny - tile})
    xs = sorted({*range(0, nx - tile + 1, tile), nx - tile})
    corners = [(y, x) for y in ys for x in xs]
    if max_tiles is not None and len(corners) > max_tiles:
        pick = np.linspace(0, len(corners) - 1, max_tiles).round().astype(int)
        corners = [corners[i] for i in pick]
    return corners


def cut_tiles(image: np.ndarray, corners: list[tuple[int, int]], tile: int) -> np.ndarray:
    """``(N, C, [Z,] tile, tile)`` float32 tiles of a channels-first ``image`` at ``corners``."""
    return np.stack([image[..., y:y + tile, x:x + tile] for y, x in corners]).astype(np.float32)


def _band_names(channel: str) -> list[str]:
    return [f"{channel} power {a:g}–{min(b, 0.5):g} cycles/px" for a, b in zip(BAND_EDGES[:-1], BAND_EDGES[1:])] + [
        f"{channel} pixel noise"]


def descriptor_names(channels: list[str]) -> dict[str, list[str]]:
    """Names of the image descriptors of each group (``features`` excluded), for ``channels``."""
    return {"brightness": [f"{c} {w}" for c in channels for w in ("mean", "median")],
            "contrast": [f"{c} {w}" for c in channels for w in ("interquartile range", "1–99 % range", "skewness")],
            "texture": [n for c in channels for n in _band_names(c)]}


def image_descriptors(tiles: np.ndarray) -> dict[str, np.ndarray]:
    """Brightness, contrast and texture descriptors of ``(N, C, [Z,] T, T)`` tiles: group → ``(N, k)``."""
    n, c = tiles.shape[:2]
    if n == 0:
        k = len(BAND_EDGES)  # bands + noise
        return {"brightness": np.zeros((0, 2 * c)), "contrast": np.zeros((0, 3 * c)), "texture": np.zeros((0, k * c))}
    flat = tiles.reshape(n, c, -1).astype(np.float64)
    mean = flat.mean(-1)
    p1, p10, p25, p50, p75, p90, p99 = np.percentile(flat, (1, 10, 25, 50, 75, 90, 99), axis=-1)
    spread = p90 - p10
    skew = np.where(spread > _TINY, (p90 + p10 - 2 * p50) / np.maximum(spread, _TINY), 0.0)
    ring = radial_frequency(tiles.shape[-2:])
    bands = [(ring > a) & (ring <= b) for a, b in zip(BAND_EDGES[:-1], BAND_EDGES[1:])]
    texture = np.empty((n, c, len(bands)))
    for i in range(n):
        for ch in range(c):
            p = power_spectrum(tiles[i, ch])
            total = p.sum() + _TINY
            texture[i, ch] = [np.log10(p[b].sum() / total + 1e-6) for b in bands]
    dx = np.diff(tiles, axis=-1).reshape(n, c, -1)
    noise = np.median(np.abs(dx - np.median(dx, axis=-1, keepdims=True)), axis=-1) / (0.6745 * np.sqrt(2))
    texture = np.concatenate([texture, np.log10(noise + 1e-6)[..., None]], axis=-1)
    return {"brightness": np.stack([mean, p50], -1).reshape(n, -1),
            "contrast": np.stack([p75 - p25, p99 - p1, skew], -1).reshape(n, -1),
            "texture": texture.reshape(n, -1)}


@dataclass
class GroupReference:
    """What the training tiles' descriptors of one group looked like, and the calibrated threshold.

    Attributes
    ----------
    names : list of str
        One per descriptor.
    mean, spread : list of float
        ``μ`` and ``s`` over training tiles.
    precision : list of list of float
        ``R⁻¹``, the inverse of the shrunk correlation of ``z``.
    threshold : float
        ``t``: the calibration quantile of the held-out tiles' distances.
    """

    names: list[str]
    mean: list[float]
    spread: list[float]
    precision: list[list[float]]
    threshold: float = 1.0

    @classmethod
    def fit(cls, values: np.ndarray, names: list[str]) -> GroupReference:
        """The reference of ``(N, k)`` training descriptors (threshold 1 until :meth:`calibrate`)."""
        mu, s = values.mean(0), np.maximum(values.std(0), _MIN_SPREAD)
        z = (values - mu) / s
        corr = np.atleast_2d(np.corrcoef(z, rowvar=False)) if len(values) > 2 else np.eye(len(mu))
        corr = np.nan_to_num(corr, nan=0.0)
        np.fill_diagonal(corr, 1.0)
        shrunk = (1 - SHRINKAGE) * corr + SHRINKAGE * np.eye(len(mu))
        return cls(list(names), mu.tolist(), s.tolist(), np.linalg.inv(shrunk).tolist())

    def z(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.mean)) / np.asarray(self.spread)

    def distance(self, values: np.ndarray) -> np.ndarray:
        """``D`` of ``(N, k)`` descriptors: ``(N,)``."""
        z = self.z(values)
        return np.sqrt(np.einsum("ni,ij,nj->n", z, np.asarray(self.precision), z) / z.shape[1])

    def calibrate(self, distances: np.ndarray) -> None:
        """Set the threshold from held-out tiles' distances ``D``."""
        self.threshold = float(max(MARGIN * np.quantile(distances, CALIBRATION_QUANTILE), _MIN_SPREAD))

    def describe(self, values: np.ndarray) -> str:
        """The descriptor that differs most (median z over the rows of ``values``), in words."""
        z = np.median(self.z(values), axis=0)
        i = int(np.argmax(np.abs(z)))
        value, mu, s = float(np.median(values[:, i])), self.mean[i], self.spread[i]
        name = self.names[i]
        if " power " in name or name.endswith(" pixel noise"):
            return f"{name} {10 ** (value - mu):.2g}× training's"
        return f"{name} {value:.3g} (training {mu:.3g} ± {s:.2g})"

    def to_dict(self) -> dict:
        return {"names": self.names, "mean": self.mean, "spread": self.spread, "precision": self.precision,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict) -> GroupReference:
        ref = cls([str(n) for n in d["names"]], [float(v) for v in d["mean"]], [float(v) for v in d["spread"]],
                  [[float(v) for v in row] for row in d["precision"]], float(d["threshold"]))
        k = len(ref.names)
        if not (len(ref.mean) == len(ref.spread) == k and np.shape(ref.precision) == (k, k)):
            raise ValueError(f"a group of {k} descriptors has mean/spread/precision of other sizes")
        if not (np.isfinite(ref.mean).all() and np.isfinite(ref.precision).all() and min(ref.spread) > 0
                and ref.threshold > 0):
            raise ValueError("non-finite or non-positive statistics")
        return ref


@dataclass
class FeatureProjection:
    """Principal components of the training tiles' bottleneck features (``(C,)`` → ``k`` scores + residual)."""

    mean: list[float]
    components: list[list[float]]

    @classmethod
    def fit(cls, features: np.ndarray, k: int = FEATURE_COMPONENTS) -> FeatureProjection:
        mu = features.mean(0)
        _, _, vt = np.linalg.svd(features - mu, full_matrices=False)
        return cls(mu.tolist(), vt[: max(1, min(k, len(features) // 4, vt.shape[0]))].tolist())

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """``(N, k + 1)``: the component scores and log10 of the norm of the rest."""
        centred = features - np.asarray(self.mean)
        comps = np.asarray(self.components)
        scores = centred @ comps.T
        rest = np.linalg.norm(centred - scores @ comps, axis=1)
        return np.concatenate([scores, np.log10(rest + _TINY)[:, None]], axis=1)

    def names(self) -> list[str]:
        return [f"feature component {i + 1}" for i in range(len(self.components))] + ["feature residual"]


@dataclass
class TileScores:
    """Scores of some tiles of one image against an :class:`InputDomain`.

    Attributes
    ----------
    corners : list of (int, int)
        Top-left corner of each tile (pixels of the image on the model's grid).
    tile_px : int
    ratios : dict of str to numpy.ndarray
        Group → ``(N,)`` distance over threshold (> 1: outside what training saw).
    reasons : dict of str to str
        Group → what differs most there, over the tiles outside in that group (groups with such tiles only).
    """

    corners: list[tuple[int, int]]
    tile_px: int
    ratios: dict[str, np.ndarray]
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def score(self) -> np.ndarray:
        """``(N,)`` the largest ratio of each tile."""
        return np.max(np.stack(list(self.ratios.values())), axis=0)

    @property
    def outside(self) -> np.ndarray:
        """``(N,)`` bool: the tile lies outside the training domain."""
        return self.score > 1.0

    @property
    def fraction_outside(self) -> float:
        return float(self.outside.mean()) if self.corners else 0.0

    def groups_outside(self) -> list[str]:
        """Groups that put most of the outside tiles outside (at least half of them), the most frequent first."""
        out = self.outside
        if not out.any():
            return []
        shares = {g: float((r[out] > 1).mean()) for g, r in self.ratios.items()}
        return [g for g in sorted(shares, key=shares.get, reverse=True) if shares[g] >= 0.5]  # type: ignore[arg-type]

    def maps(self, shape_yx: tuple[int, int]) -> np.ndarray:
        """``(1 + groups, Y, X)`` float32: the score, then each group's ratio, constant over each tile (NaN where
        no tile was scored); overlapping edge tiles keep the larger value."""
        out = np.full((1 + len(self.ratios), *shape_yx), np.nan, np.float32)
        values = np.stack([self.score, *self.ratios.values()])
        t = self.tile_px
        for i, (y, x) in enumerate(self.corners):
            block = out[:, y:y + t, x:x + t]
            np.fmax(block, values[:, i, None, None], out=block)
        return out


@dataclass
class InputDomain:
    """A compact description of a model's training inputs (stored in ``model.json`` as ``input_domain``).

    Attributes
    ----------
    tile_px : int
        Side of the tiles described (model-grid pixels).
    groups : dict of str to GroupReference
        Per group of :data:`GROUPS` present.
    projection : FeatureProjection or None
        Of the bottleneck features (None: the ``features`` group is absent).
    feature_module : str
        Name of the network module whose output the features average (:mod:`virtualstain.inference.bottleneck`).
    n_train_tiles, n_held_out_tiles : int
        Tiles behind the reference and behind the thresholds.
    held_out_outside : float
        Share of the held-out tiles outside (≈ the false-alarm rate on the training domain).
    """

    tile_px: int
    groups: dict[str, GroupReference]
    projection: FeatureProjection | None = None
    feature_module: str = ""
    n_train_tiles: int = 0
    n_held_out_tiles: int = 0
    held_out_outside: float = 0.0

    @classmethod
    def fit(cls, train: dict[str, np.ndarray], blocks: np.ndarray, held_out: dict[str, np.ndarray],
            names: dict[str, list[str]], tile_px: int, projection: FeatureProjection | None = None,
            feature_module: str = "") -> InputDomain:
        """The reference from training tiles' descriptors (group → ``(N, k)``), thresholds from held-out ones.

        The held-out distances are those of the held-out tiles from the reference, plus those of each spatial
        block of training tiles (``blocks``: ``(N,)`` block numbers) from a reference fitted on the other blocks, so
        that the thresholds know how much one part of a field differs from the rest. ``features`` values are the
        projected ones (``projection(raw features)``).
        """
        groups = {}
        for g in GROUPS:
            if g in train:
                groups[g] = GroupReference.fit(train[g], names[g])
                distances = [groups[g].distance(held_out[g])]
                for b in np.unique(blocks) if len(np.unique(blocks)) > 1 else []:
                    rest = GroupReference.fit(train[g][blocks != b], names[g])
                    distances.append(rest.distance(train[g][blocks == b]))
                pooled = np.concatenate(distances)
                groups[g].calibrate(pooled if len(pooled) else groups[g].distance(train[g]))
        domain = cls(tile_px, groups, projection, feature_module, len(next(iter(train.values()))),
                     len(next(iter(held_out.values()))))
        held = domain.score(held_out, []).outside
        domain.held_out_outside = float(held.mean()) if len(held) else 0.0
        return domain

    def score(self, descriptors: dict[str, np.ndarray], corners: list[tuple[int, int]]) -> TileScores:
        """Ratios of each tile's descriptors (group → ``(N, k)``) and, where tiles lie outside, what differs."""
        ratios = {g: ref.distance(descriptors[g]) / ref.threshold for g, ref in self.groups.items()}
        scores = TileScores(list(corners), self.tile_px, ratios)
        for g, ref in self.groups.items():
            hit = ratios[g] > 1
            if hit.any():
                scores.reasons[g] = ref.describe(descriptors[g][hit])
        return scores

    def to_dict(self) -> dict:
        return {"tile_px": self.tile_px, "groups": {g: r.to_dict() for g, r in self.groups.items()},
                "projection": ({"mean": self.projection.mean, "components": self.projection.components}
                               if self.projection else None), "feature_module": self.feature_module,
                "n_train_tiles": self.n_train_tiles, "n_held_out_tiles": self.n_held_out_tiles,
                "held_out_outside": self.held_out_outside}

    @classmethod
    def from_dict(cls, d: dict | None, source: str) -> InputDomain | None:
        """Rebuild from :meth:`to_dict` (None stays None: a model trained before the check existed).

        Raises
        ------
        UserError
            A damaged record, naming ``source``.
        """
        if d is None:
            return None
        try:
            groups = {str(g): GroupReference.from_dict(r) for g, r in d["groups"].items()}
            unknown = set(groups) - set(GROUPS)
            if unknown or not groups:
                raise ValueError(f"groups {sorted(groups)}; expected some of {GROUPS}")
            p = d.get("projection")
            projection = FeatureProjection([float(v) for v in p["mean"]],
                                           [[float(v) for v in row] for row in p["components"]]) if p else None
            if ("features" in groups) != (projection is not None):
                raise ValueError("the features group and its projection must come together")
            tile = int(d["tile_px"])
            if tile < 2:
                raise ValueError(f"tile_px {tile}")
            return cls(tile, groups, projection, str(d.get("feature_module", "")), int(d.get("n_train_tiles", 0)),
                       int(d.get("n_held_out_tiles", 0)), float(d.get("held_out_outside", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{source}: input_domain is damaged ({type(exc).__name__}: {exc}); restore the bundle, "
                            "or retrain") from None

    def warning(self, scores: TileScores, source: str) -> str:
        """One line: how much of ``source`` lies outside, the score, what differs and the fix."""
        n, k = len(scores.corners), int(scores.outside.sum())
        groups = scores.groups_outside()
        what = "; ".join(f"{g}: {scores.reasons[g]}" for g in groups if g in scores.reasons)
        fixes = "; ".join(_FIX[g] for g in groups)
        return (f"{source}: unlike the model's training images in {k} of {n} tiles ({100 * k / n:.0f} %; median "
                f"score {float(np.median(scores.score)):.1f}, 1 = the edge of what training saw) — {what}. "
                f"Predictions there are not to be trusted: {fixes}")
