"""Training losses on ``(N, C, ...)`` tensors (normalised target units; 2D ``(N, C, Y, X)`` or 3D ``(N, C, Z, Y, X)``).

``mse``, ``mae``, ``pearson``  as in :data:`LOSSES`.
``mae_msssim``  Zhao et al. 2017 (IEEE TCI 3:47, "Loss functions for image restoration with neural networks"):
                α · (1 − MS-SSIM) + (1 − α) · L1 with α = 0.84 (plain L1: the paper's Gaussian weighting of the
                L1 map has the same mean away from the borders). MS-SSIM follows Wang, Simoncelli & Bovik 2003
                (see :func:`ms_ssim`).

Foreground weighting (:func:`make_loss`): pixels whose target exceeds the channel's Otsu threshold
(:func:`~virtualstain.data.patches.signal_thresholds`, normalised units) weigh ``1 + w`` in the pixel loss
(mse, mae, and the L1 part of ``mae_msssim``): loss = mean over pixels of weight · error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import UserError

#: Weight of 1 − MS-SSIM in ``mae_msssim`` (Zhao et al. 2017).
MSSSIM_ALPHA = 0.84
#: Wang et al. 2003's exponents of the five scales; the first :data:`MSSSIM_SCALES` are used, renormalised.
WANG_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Scales of the loss' MS-SSIM: 128² patches → 128, 64, 32 px; 64² → 64, 32, 16 px.
MSSSIM_SCALES = 3
#: Gaussian window (σ in pixels, taps) of SSIM, as Wang et al. and scikit-image's ``gaussian_weights``.
SSIM_SIGMA, SSIM_WINDOW = 1.5, 11
_K1, _K2 = 0.01, 0.03
#: Floor of each scale's SSIM / contrast-structure term before the power: they may be ≤ 0 (anti-correlated or,
#: for signed data, opposite-signed means), where x^β has no real value or an infinite slope.
_FLOOR = 1e-4

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pearson_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 − Pearson r, per sample and channel, averaged (FRM's PCC loss)."""
    p = prediction.flatten(2)
    t = target.flatten(2)
    p = p - p.mean(dim=-1, keepdim=True)
    t = t - t.mean(dim=-1, keepdim=True)
    r = (p * t).sum(-1) / torch.sqrt((p * p).sum(-1) * (t * t).sum(-1) + eps)
    return 1.0 - r.mean()


def _gaussian_window(taps: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(taps, dtype=like.dtype, device=like.device) - (taps - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of ``(B, 1, Y, X)`` images: ``(B, 1, Y − taps + 1, X − taps + 1)``.

    As sliding-window sums (``unfold``): on the CPU their backward pass is about 2× faster than that of
    single-channel convolutions.
    """
    taps = window.numel()
    x = (x.unfold(-1, taps, 1) * window).sum(-1)
    return (x.unfold(-2, taps, 1) * window).sum(-1)


def _ssim_terms(p: torch.Tensor, t: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term of each ``(B, 1, Y, X)`` image pair (data range 1), each ``(B,)``."""
    c1, c2 = _K1 ** 2, _K2 ** 2
    mu_p, mu_t = _filter(p, window), _filter(t, window)
    var_p = (_filter(p * p, window) - mu_p ** 2).clamp(min=0.0)  # ≥ 0 but for float32 cancellation
    var_t = (_filter(t * t, window) - mu_t ** 2).clamp(min=0.0)
    cov = _filter(p * t, window) - mu_p * mu_t
    cs = (2 * cov + c2) / (var_p + var_t + c2)
    luminance = (2 * mu_p * mu_t + c1) / (mu_p ** 2 + mu_t ** 2 + c1)
    return (luminance * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(prediction: torch.Tensor, target: torch.Tensor, scales: int = MSSSIM_SCALES) -> torch.Tensor:
    """Multi-scale SSIM of each sample and channel, averaged (a scalar tensor, float32; 1 for identical arrays).

    Wang et al. 2003: at scales 1…M (each halving Y and X by 2×2 averaging) the mean contrast-structure term
    ``cs_j``, at the coarsest also luminance (the SSIM ``s_M``); MS-SSIM = s_M^β_M · ∏_{j<M} cs_j^β_j with Wang's
    exponents, renormalised to sum 1. Each scale uses an 11-tap Gaussian window (σ 1.5 px) without padding, as
    scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``; scales that no
    longer hold a window are dropped (a window larger than the image shrinks), so any size works.

    Normalised targets may be negative and of any range: both arrays are mapped by the target's minimum and range
    (per channel over the batch, without gradient; a constant channel keeps range 1) so that the target spans
    [0, 1], and SSIM's constants are those of data range 1. Each scale's term is floored at 1e-4 before its power
    (it may be ≤ 0), so the value and its gradient stay finite. 3D arrays are compared plane by plane (Z folded
    into the batch: Z is sampled unlike Y and X). Computed in float32, also under mixed-precision autocast.
    """
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        p, t = prediction.float(), target.float()
        per_channel = t.detach().transpose(0, 1).reshape(t.shape[1], -1)
        lo, hi = per_channel.min(dim=1).values, per_channel.max(dim=1).values
        shape = (1, -1) + (1,) * (t.ndim - 2)
        lo, span = lo.view(shape), torch.where(hi > lo, hi - lo, torch.ones_like(hi)).view(shape)
        p = ((p - lo) / span).reshape(-1, 1, *t.shape[-2:])
        t = ((t - lo) / span).reshape(-1, 1, *t.shape[-2:])
        side = min(t.shape[-2:])
        taps = min(SSIM_WINDOW, side if side % 2 else side - 1)
        window = _gaussian_window(taps, SSIM_SIGMA * taps / SSIM_WINDOW, t)
        usable = next(j for j in range(scales, 0, -1) if j == 1 or side // 2 ** (j - 1) >= taps)
        betas = torch.tensor(WANG_BETAS[:usable], dtype=t.dtype, device=t.device)
        terms = []
        for j in range(usable):
            if j:
                p, t = F.avg_pool2d(p, 2), F.avg_pool2d(t, 2)
            ssim, cs = _ssim_terms(p, t, window)
            terms.append(ssim if j == usable - 1 else cs)
        stacked = torch.stack(terms).clamp(min=_FLOOR)  # (scales, planes)
        return (stacked ** (betas / betas.sum()).view(-1, 1)).prod(0).mean()


@dataclass(frozen=True)
class ForegroundWeighting:
    """Per-pixel weights ``1 + weight`` where the target exceeds its channel's threshold, else 1.

    Attributes
    ----------
    weight : float
        Extra weight of foreground pixels (≥ 0).
    thresholds : tuple of float
        One threshold per target channel, normalised target units.
    """

    weight: float
    thresholds: tuple[float, ...]

    def __call__(self, target: torch.Tensor) -> torch.Tensor:
        """Weights shaped like ``target`` ``(N, C, ...)``, float32."""
        if target.shape[1] != len(self.thresholds):
            raise ValueError(f"{len(self.thresholds)} foreground thresholds for a target of {target.shape[1]} channels")
        shape = (1, -1) + (1,) * (target.ndim - 2)
        thresholds = torch.tensor(self.thresholds, dtype=torch.float32, device=target.device).view(shape)
        return 1.0 + self.weight * (target.float() > thresholds).float()


@dataclass(frozen=True)
class PixelLoss:
    """Foreground-weighted mean squared (``kind`` ``mse``) or absolute (``mae``) error, float32."""

    kind: str
    weighting: ForegroundWeighting

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=prediction.device.type, enabled=False):
            error = prediction.float() - target.float()
            error = error * error if self.kind == "mse" else error.abs()
            return (self.weighting(target) * error).mean()


@dataclass(frozen=True)
class MixedLoss:
    """``alpha`` · (1 − MS-SSIM) + (1 − ``alpha``) · L1, the L1 optionally foreground-weighted, float32."""

    weighting: ForegroundWeighting | None = None
    alpha: float = MSSSIM_ALPHA

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=prediction.device.type, enabled=False):
            error = (prediction.float() - target.float()).abs()
            if self.weighting is not None:
                error = self.weighting(target) * error
            return self.alpha * (1.0 - ms_ssim(prediction, target)) + (1.0 - self.alpha) * error.mean()


#: The plain losses by ``training.loss`` name.
LOSSES: dict[str, Loss] = {"mse": F.mse_loss, "mae": F.l1_loss, "pearson": pearson_loss, "mae_msssim": MixedLoss()}


def make_loss(name: str, foreground_weight: float = 0.0, thresholds: np.ndarray | None = None) -> Loss:
    """The training loss ``name`` (``training.loss``), optionally foreground-weighted.

    Parameters
    ----------
    name : str
        ``mse``, ``mae``, ``pearson`` or ``mae_msssim``.
    foreground_weight : float
        ``training.foreground_weight`` w ≥ 0: foreground pixels weigh 1 + w; 0 gives the plain loss.
    thresholds : numpy.ndarray, optional
        ``(C_out,)`` foreground threshold per target channel in normalised units (e.g. from
        :func:`~virtualstain.data.patches.signal_thresholds` on the training targets); needed when w > 0.

    Returns
    -------
    callable
        ``loss(prediction, target)`` on ``(N, C, ...)`` tensors → scalar tensor.

    Raises
    ------
    UserError
        Unknown loss, a negative weight, or a weight for ``pearson`` (not a pixel loss).
    ValueError
        w > 0 without thresholds.
    """
    if name not in LOSSES:
        raise UserError(f"training.loss {name!r} is unknown; use one of {sorted(LOSSES)}")
    if not foreground_weight >= 0:
        raise UserError(f"training.foreground_weight must be ≥ 0 (got {foreground_weight})")
    if foreground_weight == 0:
        return LOSSES[name]
    if name == "pearson":
        raise UserError("training.foreground_weight applies to the pixel losses mse, mae and mae_msssim, not to "
                        "pearson; set it to 0 or pick another training.loss")
    if thresholds is None:
        raise ValueError("foreground weighting needs one threshold per target channel")
    weighting = ForegroundWeighting(float(foreground_weight), tuple(float(v) for v in np.ravel(thresholds)))
    return MixedLoss(weighting) if name == "mae_msssim" else PixelLoss(name, weighting)
