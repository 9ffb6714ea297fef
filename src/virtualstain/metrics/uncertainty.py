"""Per-pixel uncertainty: calibrating a predicted σ and measuring how well it tells where the errors are.

A model's raw σ (the standard deviation over the 8 test-time flips and rotations) is in the right places but not
in the right units. Calibration finds one factor ``a`` per channel so that ``|e| ≤ a·σ`` for the share of pixels a
normal error would give within 1σ (68.27 %), on regions the network did not train on (:func:`calibration_factor`).
The calibrated σ is then judged on other held-out regions:

``coverage(k)``   share of pixels with ``|e| ≤ k·σ``; a normal error gives 68.27 % (k = 1) and 95.45 % (k = 2);
``tile Spearman`` Spearman's rank correlation between the mean σ and the mean ``|e|`` over 32 × 32 tiles
                  (``scipy.stats.spearmanr``): does a larger σ mark a larger error?;
``reliability``   pixels binned by σ (deciles): per bin the mean σ and the root-mean-square error, which a
                  calibrated σ puts on the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

#: Share of a normal error's values within 1σ and 2σ.
NORMAL_1SIGMA = float(special.erf(1 / np.sqrt(2)))
NORMAL_2SIGMA = float(special.erf(2 / np.sqrt(2)))
#: Tile side of the Spearman correlation (pixels).
SPEARMAN_TILE = 32
#: Smallest σ as a share of the target's range (a pixel every transform agreed on is not certain).
SIGMA_FLOOR = 1e-4


def floored(sigma: np.ndarray, scale: float) -> np.ndarray:
    """σ with :data:`SIGMA_FLOOR` × ``scale`` (the target's range) as its least value."""
    return np.maximum(sigma, SIGMA_FLOOR * scale)


def calibration_factor(errors: np.ndarray, sigma: np.ndarray, share: float = NORMAL_1SIGMA) -> float:
    """The factor ``a`` with ``|e| ≤ a·σ`` on ``share`` of the pixels (``errors``, ``sigma`` of any equal shape)."""
    ratio = np.abs(errors).ravel() / sigma.ravel()
    return float(np.quantile(ratio[np.isfinite(ratio)], share))


def coverage(errors: np.ndarray, sigma: np.ndarray, k: float = 1.0) -> float:
    """Share of pixels with ``|e| ≤ k·σ``."""
    return float(np.mean(np.abs(errors) <= k * sigma))


def tile_means(image: np.ndarray, tile: int = SPEARMAN_TILE) -> np.ndarray:
    """Means of the whole ``tile`` × ``tile`` blocks of a ``(..., Y, X)`` array (leading axes pooled): ``(n,)``."""
    a = np.asarray(image, np.float64).reshape(-1, *image.shape[-2:]).mean(0)
    ny, nx = (a.shape[0] // tile) * tile, (a.shape[1] // tile) * tile
    return a[:ny, :nx].reshape(ny // tile, tile, nx // tile, tile).mean(axis=(1, 3)).ravel()


def tile_spearman(errors: list[np.ndarray], sigmas: list[np.ndarray], tile: int = SPEARMAN_TILE) -> float:
    """Spearman's ρ between the mean σ and the mean ``|e|`` of the ``tile`` blocks of every image (NaN under 3 tiles)."""
    e = np.concatenate([tile_means(np.abs(x), tile) for x in errors])
    s = np.concatenate([tile_means(x, tile) for x in sigmas])
    if len(e) < 3 or np.ptp(s) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(stats.spearmanr(s, e).statistic)


def reliability(errors: np.ndarray, sigma: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(mean σ, RMS error) of pixels binned by σ into ``bins`` quantile bins: two ``(bins,)`` arrays."""
    s, e = sigma.ravel(), np.abs(errors).ravel()
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s = np.bincount(which, weights=s, minlength=bins) / counts
        rms = np.sqrt(np.bincount(which, weights=e ** 2, minlength=bins) / counts)
    return mean_s, rms


@dataclass
class ChannelCalibration:
    """The calibration of one output channel's σ and how it held on the test regions.

    Attributes
    ----------
    factor : float
        ``a``: calibrated σ = a · raw σ (target units).
    coverage_1sigma, coverage_2sigma : float or None
        On the test regions, share of pixels within 1σ and 2σ of the calibrated σ (normal: 0.683, 0.954).
    tile_spearman : float or None
        On the test regions, Spearman's ρ of mean σ vs mean |error| over 32 × 32 tiles.
    reliability_sigma, reliability_rms : list of float
        The reliability diagram on the test regions (σ deciles).
    """

    factor: float
    coverage_1sigma: float | None = None
    coverage_2sigma: float | None = None
    tile_spearman: float | None = None
    reliability_sigma: list[float] = field(default_factory=list)
    reliability_rms: list[float] = field(default_factory=list)


@dataclass
class UncertaintyCalibration:
    """How a model's σ is made and calibrated (``model.json``: ``uncertainty``).

    Attributes
    ----------
    method : str
        ``"tta"``: the spread over the 8 test-time flips and rotations; ``"tta + ensemble of K"``: plus the spread of
        the K members' predictions.
    calibrated_on, judged_on : str
        The regions behind the factors and behind the measures, in words.
    channels : dict of str to ChannelCalibration
        Per output channel.
    """

    method: str
    calibrated_on: str
    judged_on: str
    channels: dict[str, ChannelCalibration]

    def factors(self, names: list[str]) -> list[float]:
        """The factor of each channel in ``names`` (1 for a channel without one)."""
        return [self.channels[n].factor if n in self.channels else 1.0 for n in names]

    def to_dict(self) -> dict:
        return {"method": self.method, "calibrated_on": self.calibrated_on, "judged_on": self.judged_on,
                "channels": {n: vars(c) for n, c in self.channels.items()}}

    @classmethod
    def from_dict(cls, d: dict | None) -> UncertaintyCalibration | None:
        """Rebuild from :meth:`to_dict` (None stays None); raises ValueError/KeyError/TypeError when damaged."""
        if d is None:
            return None
        channels = {str(n): ChannelCalibration(**c) for n, c in d["channels"].items()}
        if not all(np.isfinite(c.factor) and c.factor > 0 for c in channels.values()):
            raise ValueError("calibration factors must be finite and positive")
        return cls(str(d["method"]), str(d.get("calibrated_on", "")), str(d.get("judged_on", "")), channels)
