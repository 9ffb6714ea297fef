"""Intensity normalisation fitted on training data and inverted on predictions.

Methods (per channel)
---------------------
``percentile``  x' = (x − p_low) / (p_high − p_low)               (no clipping; default p 1 / 99.8)
``zscore``      x' = (x − mean) / std
``minmax``      x' = clip((x − ρ_min) / (ρ_max − ρ_min), 0, 1)      (PICS eq. 1)

Scope
-----
``dataset`` (default)  the statistics are fitted on the training regions only and stored in the model, so
                       predictions are returned in the target's own units by :meth:`Normalizer.inverse`.
``image``              every array given to the normaliser (one whole field of view) is normalised by its own
                       statistics, the same method and percentiles, at training and at prediction: a new field
                       with another brightness or contrast then looks like the training fields. The fitted
                       statistics are kept for the record and for channels that are constant in an image (their
                       scale falls back to the fitted one). Inputs only: such a normaliser has no inverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError

METHODS = ("percentile", "zscore", "minmax")
SCOPES = ("dataset", "image")
DEFAULT_PERCENTILES = (1.0, 99.8)
_MAX_SAMPLES_PER_ARRAY = 2_000_000


def _subsample(channel_values: np.ndarray) -> np.ndarray:
    flat = channel_values.ravel()
    step = max(1, flat.size // _MAX_SAMPLES_PER_ARRAY)
    return flat[::step]


def _statistics(values: np.ndarray, method: str, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``(offset, scale)`` of one channel's values (any shape, float64) for ``method``; the scale may be 0."""
    if method == "percentile":
        lo, hi = np.percentile(values, percentiles)
        return float(lo), float(hi - lo)
    if method == "zscore":
        return float(values.mean()), float(values.std())
    return float(values.min()), float(values.max() - values.min())


@dataclass
class Normalizer:
    """Per-channel affine normalisation.

    Attributes
    ----------
    method : str
        One of ``percentile``, ``zscore``, ``minmax``.
    offset, scale : list of float
        Per channel: x' = (x − offset) / scale, fitted on the training data (in the array's units).
    clip : bool
        Clip normalised values to [0, 1] (``minmax``).
    scope : str
        ``dataset``: apply the fitted ``offset``/``scale``; ``image``: each array's own statistics (see the module).
    percentiles : tuple of float
        Low and high percentile (%) of the ``percentile`` method, used again per image in ``image`` scope.
    """

    method: str
    offset: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    clip: bool = False
    scope: str = "dataset"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES

    @classmethod
    def fit(cls, arrays: list[np.ndarray], method: str = "percentile",
            percentiles: tuple[float, float] = DEFAULT_PERCENTILES, what: str = "images",
            scope: str = "dataset") -> Normalizer:
        """Fit on channels-first arrays (e.g. the training regions).

        Raises
        ------
        UserError
            Unknown method or scope, or a channel that is constant over the training data.
        """
        if method not in METHODS:
            raise UserError(f"normalization {method!r} is unknown; use one of {METHODS}")
        if scope not in SCOPES:
            raise UserError(f"normalization scope {scope!r} is unknown; use one of {SCOPES}")
        n_channels = arrays[0].shape[0]
        offset, scale = [], []
        for c in range(n_channels):
            values = np.concatenate([_subsample(a[c]) for a in arrays]).astype(np.float64)
            o, s = _statistics(values, method, percentiles)
            if not s > 0:
                raise UserError(f"channel {c} of the training {what} has no contrast ({method} spread is 0); "
                                "check that the right channel/file is used, or pick another normalization")
            offset.append(o)
            scale.append(s)
        return cls(method=method, offset=offset, scale=scale, clip=(method == "minmax"), scope=scope,
                   percentiles=(float(percentiles[0]), float(percentiles[1])))

    def _shape(self, values: list[float], ndim: int) -> np.ndarray:
        return np.asarray(values, dtype=np.float32).reshape((-1,) + (1,) * (ndim - 1))

    def statistics(self, array: np.ndarray) -> tuple[list[float], list[float]]:
        """Per-channel ``(offset, scale)`` applied to the channels-first ``array`` (in its units).

        The fitted values in ``dataset`` scope; in ``image`` scope the array's own (subsampled beyond 2 million
        pixels per channel, as in :meth:`fit`), with the fitted scale for a channel that is constant in it.
        """
        if self.scope == "dataset":
            return list(self.offset), list(self.scale)
        offset, scale = [], []
        for c in range(array.shape[0]):
            o, s = _statistics(_subsample(np.asarray(array[c])).astype(np.float64), self.method, self.percentiles)
            offset.append(o)
            scale.append(s if s > 0 else self.scale[c])
        return offset, scale

    def __call__(self, array: np.ndarray) -> np.ndarray:
        """Normalise a channels-first array (float32)."""
        offset, scale = self.statistics(array)
        out = (np.asarray(array, np.float32) - self._shape(offset, array.ndim)) / self._shape(scale, array.ndim)
        return np.clip(out, 0.0, 1.0) if self.clip else out

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Map normalised values back to the original units (float32).

        Raises
        ------
        ValueError
            In ``image`` scope, where the statistics belong to each image and no inverse is defined.
        """
        if self.scope != "dataset":
            raise ValueError(f"a normaliser of scope {self.scope!r} has no inverse; targets use scope 'dataset'")
        return np.asarray(array, np.float32) * self._shape(self.scale, array.ndim) + self._shape(self.offset, array.ndim)

    def to_dict(self) -> dict:
        return {"method": self.method, "offset": self.offset, "scale": self.scale, "clip": self.clip,
                "scope": self.scope, "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "normalization") -> Normalizer:
        """Rebuild from :meth:`to_dict` output, checked: a known method and scope, finite offsets, finite positive
        scales, ordered percentiles. Records without ``scope`` / ``percentiles`` (bundles written before they
        existed) load as ``dataset`` scope with the default percentiles.

        Raises
        ------
        UserError
            Naming ``source`` (e.g. ``RUN/model/model.json: normalization.input``): a damaged record would
            otherwise turn every prediction into NaN or infinity.
        """
        fix = "the stored normalisation is damaged — restore the model bundle or retrain"
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a mapping with method/offset/scale, got {type(d).__name__}; {fix}")
        method = d.get("method")
        if method not in METHODS:
            raise UserError(f"{source}: normalization method {method!r} is not one of {METHODS}; {fix}")
        values = {}
        for key in ("offset", "scale"):
            raw = d.get(key)
            if not isinstance(raw, list) or not raw or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
                raise UserError(f"{source}: {key} must be a non-empty list of numbers, got {raw!r}; {fix}")
            values[key] = [float(v) for v in raw]
        offset, scale = values["offset"], values["scale"]
        if len(offset) != len(scale):
            raise UserError(f"{source}: {len(offset)} offsets but {len(scale)} scales; {fix}")
        if not all(np.isfinite(offset)):
            raise UserError(f"{source}: offset {offset} is not finite (NaN or infinity); {fix}")
        if not all(np.isfinite(v) and v > 0 for v in scale):
            raise UserError(f"{source}: scale {scale} must be finite and > 0 (a zero or NaN scale makes every "
                            f"prediction NaN); {fix}")
        scope = d.get("scope", "dataset")
        if scope not in SCOPES:
            raise UserError(f"{source}: normalization scope {scope!r} is not one of {SCOPES}; {fix}")
        percentiles = d.get("percentiles", list(DEFAULT_PERCENTILES))
        if not (isinstance(percentiles, list) and len(percentiles) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in percentiles)
                and 0 <= percentiles[0] < percentiles[1] <= 100):
            raise UserError(f"{source}: percentiles {percentiles!r} must be two numbers 0 ≤ low < high ≤ 100; {fix}")
        return cls(method=method, offset=offset, scale=scale, clip=bool(d.get("clip", False)), scope=scope,
                   percentiles=(float(percentiles[0]), float(percentiles[1])))
