"""A dimension-generic U-Net (2D or 3D, any number of input and output channels).

Per level: conv-BN-ReLU ×2 (3×3[×3], zero padding 1); down: stride-2 conv (kernel 2)
+ BN + ReLU; up (``upsampling``): either a transposed conv (kernel 2, stride 2) + BN + ReLU
(``"transposed"``, the fnet/PICS original), or bilinear (2D) / trilinear (3D) interpolation
(``align_corners=False``) followed by a 3×3[×3] conv + BN + ReLU (``"bilinear"``: every output
pixel gets the same kind of weights, so no period-2 checkerboard); then concatenation with
the skip, conv-BN-ReLU ×2; a linear 3×3 output conv (fnet). ``residual=True`` adds the
input to the output (PICS); when channel counts differ, a learned 1×1 projection of the
input is added instead. ``downsample_z=False`` keeps Z (anisotropic, for thin stacks).
``scale=k`` (2D) makes a super-resolution network (DL-SRQPI): the input is first upsampled
k× in Y and X (bicubic), so the output is k× larger than the input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .configs import UNetConfig

__all__ = ["UNet", "UNetConfig", "count_parameters", "upsample"]


def _ops(dims: int):
    return (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d)


def _norm_act(bn, width: int, batchnorm: bool) -> list[nn.Module]:
    return ([bn(width)] if batchnorm else []) + [nn.ReLU(inplace=True)]


def _up(config: UNetConfig, c_in: int, c_out: int) -> nn.Sequential:
    """Decoder upsampling by ``config.factors()`` from ``c_in`` to ``c_out`` feature maps, then BN + ReLU."""
    conv, convt, bn = _ops(config.spatial_dims)
    stride, bias = config.factors(), not config.batchnorm
    if config.upsampling == "transposed":
        first: list[nn.Module] = [convt(c_in, c_out, stride, stride=stride, bias=bias)]
    else:
        mode = "bilinear" if config.spatial_dims == 2 else "trilinear"
        first = [nn.Upsample(scale_factor=tuple(float(f) for f in stride), mode=mode, align_corners=False),
                 conv(c_in, c_out, 3, padding=1, bias=bias)]
    return nn.Sequential(*first, *_norm_act(bn, c_out, config.batchnorm))


class DoubleConv(nn.Sequential):
    """(conv 3 → BN → ReLU) × 2."""

    def __init__(self, dims: int, c_in: int, c_out: int, batchnorm: bool):
        conv, _, bn = _ops(dims)
        super().__init__(
            conv(c_in, c_out, 3, padding=1, bias=not batchnorm), *_norm_act(bn, c_out, batchnorm),
            conv(c_out, c_out, 3, padding=1, bias=not batchnorm), *_norm_act(bn, c_out, batchnorm),
        )


class UNet(nn.Module):
    """U-Net mapping ``(N, C_in, *spatial)`` to ``(N, C_out, *spatial)``.

    Spatial sizes must be multiples of ``config.size_multiple()``; the prediction
    workflow pads (reflect) and crops so that users never see this constraint.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        dims, widths, bn_on = config.spatial_dims, config.widths(), config.batchnorm
        conv, _, bn = _ops(dims)
        stride = config.factors()
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        c_in = config.in_channels
        for level in range(config.depth):
            self.encoders.append(DoubleConv(dims, c_in, widths[level], bn_on))
            self.downs.append(nn.Sequential(conv(widths[level], widths[level], stride, stride=stride, bias=not bn_on),
                                            *_norm_act(bn, widths[level], bn_on)))
            c_in = widths[level]
        self.bottleneck = DoubleConv(dims, c_in, widths[config.depth], bn_on)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(config.depth)):
            self.ups.append(_up(config, widths[level + 1], widths[level]))
            self.decoders.append(DoubleConv(dims, 2 * widths[level], widths[level], bn_on))
        self.head = conv(widths[0], config.out_channels, 3, padding=1)
        self.skip_projection = None
        if config.residual and config.in_channels != config.out_channels:
            self.skip_projection = conv(config.in_channels, config.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = upsample(x, self.config.scale)
        skips = []
        h = x
        for enc, down in zip(self.encoders, self.downs):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            h = dec(torch.cat([skip, up(h)], dim=1))
        out = self.head(h)
        if self.config.residual:
            out = out + (self.skip_projection(x) if self.skip_projection is not None else x)
        return out


def upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic ``scale``× upsampling of ``(N, C, Y, X)`` (pixel centres aligned, as ``align_corners=False``)."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
