"""SRCNN (Dong et al. 2016), the super-resolution baseline of DL-SRQPI.

Bicubic ``scale``× upsampling, then three convolutions: 9×9 → ``base_width`` maps (ReLU),
1×1 → ``base_width // 2`` maps (ReLU), 5×5 → the output channels (linear); zero padding keeps
the size ("same" convolutions, so every output pixel is predicted).
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import SRCNNConfig
from .unet import upsample


class SRCNN(nn.Module):
    """SRCNN mapping ``(N, C_in, Y, X)`` to ``(N, C_out, scale·Y, scale·X)``."""

    def __init__(self, config: SRCNNConfig):
        super().__init__()
        self.config = config
        widths = [config.in_channels, config.base_width, max(1, config.base_width // 2), config.out_channels]
        layers: list[nn.Module] = []
        for (kernel, relu), c_in, c_out in zip(config.LAYERS, widths[:-1], widths[1:]):
            layers.append(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2))
            if relu:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(upsample(x, self.config.scale))
