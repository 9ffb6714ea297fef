"""Random intensity changes of normalised input patches, so that a model holds on fields of view with another
brightness, contrast, sharpness or noise than the training fields.

Applied to the **input only** (the target is what the stain looks like, whatever the input's exposure), after
normalisation, on channels-first ``(C, Y, X)`` or ``(C, Z, Y, X)`` patches. Every channel draws its own
parameters; the transforms run in this order, each with its own probability:

``gain``    x ← g · x,                      g log-uniform in ``gain_range`` (about the normalisation's offset,
                                             i.e. the low percentile, mean or minimum of the training inputs)
``offset``  x ← x + o · std(x),             o uniform in ``offset_range``, in units of the patch's std
``gamma``   x ← lo + (hi − lo) · ((x − lo) / (hi − lo))^γ,  γ log-uniform in ``gamma_range``, lo/hi the patch's
                                             min/max (values stay in [lo, hi])
``blur``    Gaussian filter of σ uniform in ``blur_sigma_px`` (pixels), in Y and X only (not across Z)
``noise``   x ← x + n,  n ~ N(0, (s · std(x))²),  s uniform in ``noise_std``, relative to the patch's std

All draws come from the generator the patch sampler passes, so patches are deterministic by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter


def _check_range(name: str, bounds: tuple[float, float], low: float, positive: bool = False) -> None:
    lo, hi = bounds
    if not (np.isfinite(lo) and np.isfinite(hi) and low <= lo <= hi) or (positive and not lo > 0):
        raise ValueError(f"{name} {list(bounds)} must be finite with {low:g} {'<' if positive else '≤'} low ≤ high")


@dataclass(frozen=True)
class IntensityAugmentation:
    """Ranges and probabilities of the intensity transforms (see the module for the formulas).

    Attributes
    ----------
    gain_range : tuple of float
        Multiplicative gain, drawn log-uniformly (> 0).
    gain_probability : float
        Chance that a channel's gain changes.
    offset_range : tuple of float
        Additive offset in units of the patch channel's standard deviation.
    offset_probability : float
    gamma_range : tuple of float
        Gamma exponent, drawn log-uniformly (> 0), on the patch rescaled to [0, 1] by its min/max.
    gamma_probability : float
    blur_sigma_px : tuple of float
        Standard deviation of the Gaussian blur in input pixels (YX), drawn uniformly.
    blur_probability : float
    noise_std : tuple of float
        Standard deviation of additive Gaussian noise relative to the patch channel's standard deviation.
    noise_probability : float
    """

    gain_range: tuple[float, float] = (0.7, 1.4)
    gain_probability: float = 0.5
    offset_range: tuple[float, float] = (-0.2, 0.2)
    offset_probability: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.4)
    gamma_probability: float = 0.3
    blur_sigma_px: tuple[float, float] = (0.0, 1.5)
    blur_probability: float = 0.2
    noise_std: tuple[float, float] = (0.0, 0.1)
    noise_probability: float = 0.2

    def __post_init__(self) -> None:
        _check_range("gain_range", self.gain_range, 0.0, positive=True)
        _check_range("offset_range", self.offset_range, -np.inf)
        _check_range("gamma_range", self.gamma_range, 0.0, positive=True)
        _check_range("blur_sigma_px", self.blur_sigma_px, 0.0)
        _check_range("noise_std", self.noise_std, 0.0)
        for name in ("gain", "offset", "gamma", "blur", "noise"):
            p = getattr(self, f"{name}_probability")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}_probability {p} must lie in [0, 1]")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A randomly changed copy of the channels-first patch ``x`` (float32, same shape)."""
        out = np.array(x, dtype=np.float64)
        n = out.shape[0]
        for c in np.flatnonzero(rng.random(n) < self.gain_probability):
            out[c] *= np.exp(rng.uniform(*np.log(self.gain_range)))
        for c in np.flatnonzero(rng.random(n) < self.offset_probability):
            out[c] += rng.uniform(*self.offset_range) * out[c].std()
        for c in np.flatnonzero(rng.random(n) < self.gamma_probability):
            out[c] = _gamma(out[c], float(np.exp(rng.uniform(*np.log(self.gamma_range)))))
        for c in np.flatnonzero(rng.random(n) < self.blur_probability):
            sigma = rng.uniform(*self.blur_sigma_px)
            out[c] = gaussian_filter(out[c], (0.0,) * (out.ndim - 3) + (sigma, sigma))
        for c in np.flatnonzero(rng.random(n) < self.noise_probability):
            out[c] += rng.standard_normal(out[c].shape) * (rng.uniform(*self.noise_std) * out[c].std())
        return out.astype(np.float32)


def _gamma(channel: np.ndarray, gamma: float) -> np.ndarray:
    """``channel`` rescaled to [0, 1] by its min/max, raised to ``gamma``, mapped back (unchanged if flat)."""
    lo, hi = channel.min(), channel.max()
    if not hi > lo:
        return channel
    return lo + (hi - lo) * ((channel - lo) / (hi - lo)) ** gamma
