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
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(method=d["method"], offset=list(d["offset"]), scale=list(d["scale"]), clip=bool(d.get("clip", False)))
