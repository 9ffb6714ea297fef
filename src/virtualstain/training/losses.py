"""Training losses on ``(N, C, ...)`` tensors."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def pearson_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 − Pearson r, per sample and channel, averaged (FRM's PCC loss)."""
    p = prediction.flatten(2)
    t = target.flatten(2)
    p = p - p.mean(dim=-1, keepdim=True)
    t = t - t.mean(dim=-1, keepdim=True)
    r = (p * t).sum(-1) / torch.sqrt((p * p).sum(-1) * (t * t).sum(-1) + eps)
    return 1.0 - r.mean()


LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "pearson": pearson_loss}
