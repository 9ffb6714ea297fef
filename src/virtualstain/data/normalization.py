"""Intensity normalisation fitted on training data and inverted on predictions.

Methods (per channel)
---------------------
``percentile``  x' = (x − p_low) / (p_high − p_low)               (no clipping; default p 1 / 99.8)
``zscore``      x' = (x − mean) / std
``minmax``      x' = clip((x − ρ_min) / (ρ_max − ρ_min), 0, 1)      (PICS eq. 1)

The statistics are fitted on the training regions only and stored in the model, so
predictions are returned in the target's own units by :meth:`Normalizer.inverse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError

METHODS = ("percentile", "zscore", "minmax")
_MAX_SAMPLES_PER_ARRAY = 2_000_000


def _subsample(channel_values: np.ndarray) -> np.ndarray:
    flat = channel_values.ravel()
    step = max(1, flat.size // _MAX_SAMPLES_PER_ARRAY)
    return flat[::step]


@dataclass
class Normalizer:
    """Per-channel affine normalisation.

    Attributes
    ----------
    method : str
        One of ``percentile``, ``zscore``, ``minmax``.
    offset, scale : list of float
        Per channel: x' = (x − offset) / scale.
    clip : bool
        Clip normalised values to [0, 1] (``minmax``).
    """

    method: str
    offset: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    clip: bool = False

    @classmethod
    def fit(cls, arrays: list[np.ndarray], method: str = "percentile", percentiles: tuple[float, float] = (1.0, 99.8),
            what: str = "images") -> Normalizer:
        """Fit on channels-first arrays (e.g. the training regions).

        Raises
        ------
        UserError
            Unknown method, or a channel that is constant over the training data.
        """
        if method not in METHODS:
            raise UserError(f"normalization {method!r} is unknown; use one of {METHODS}")
        n_channels = arrays[0].shape[0]
        offset, scale = [], []
        for c in range(n_channels):
            values = np.concatenate([_subsample(a[c]) for a in arrays]).astype(np.float64)
            if method == "percentile":
                lo, hi = np.percentile(values, percentiles)
                o, s = lo, hi - lo
            elif method == "zscore":
                o, s = values.mean(), values.std()
            else:
                o, s = values.min(), values.max() - values.min()
            if not s > 0:
                raise UserError(f"channel {c} of the training {what} has no contrast ({method} spread is 0); "
                                "check that the right channel/file is used, or pick another normalization")
            offset.append(float(o))
            scale.append(float(s))
        return cls(method=method, offset=offset, scale=scale, clip=(method == "minmax"))

    def _shape(self, values: list[float], ndim: int) -> np.ndarray:
        return np.asarray(values, dtype=np.float32).reshape((-1,) + (1,) * (ndim - 1))

    def __call__(self, array: np.ndarray) -> np.ndarray:
        """Normalise a channels-first array (float32)."""
        out = (np.asarray(array, np.float32) - self._shape(self.offset, array.ndim)) / self._shape(self.scale, array.ndim)
        return np.clip(out, 0.0, 1.0) if self.clip else out

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Map normalised values back to the original units (float32)."""
        return np.asarray(array, np.float32) * self._shape(self.scale, array.ndim) + self._shape(self.offset, array.ndim)

    def to_dict(self) -> dict:
        return {"method": self.method, "offset": self.offset, "scale": self.scale, "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict, source: str = "normalization") -> Normalizer:
        """Rebuild from :meth:`to_dict` output, checked: a known method, finite offsets, finite positive scales.

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
        return cls(method=method, offset=offset, scale=scale, clip=bool(d.get("clip", False)))
