"""The VirFluoNet generator (a U-Net with tanh output) and the conditional discriminators of its cGAN.

Generator (VirFluoNet, Methods "cGAN implementation"; 3×3 kernels throughout): an initial stride-2 conv;
``depth − 1`` encoder blocks LReLU(0.2)-Conv(stride 2)-BN; decoder blocks ReLU-ConvT(stride 2)-BN, each followed
by concatenation with the encoder output of its level (the skips); a last ReLU-ConvT(stride 2) back to the input
grid and tanh. ``upsampling`` replaces the transposed convs by bilinear interpolation + conv, or by sub-pixel
convolutions (:class:`SubPixelUp`, the preset: full-resolution detail without a checkerboard). Every feature
map lives at half resolution or coarser, so the network is cheap per pixel.

Units: the generator's tensors are in the training workflow's normalised units (inputs ≈ [0, 1] by their
percentiles, targets exactly [0, 1] by their min/max); it maps its input to [−1, 1] (2x − 1) and its tanh output
back to [0, 1] ((t + 1)/2), the paper's [−1, 1] normalisation, so the bundle predicts like any other model.

Discriminators (training only; never shipped), on the concatenation of the generator's input and the real or the
generated target, returning logits (the sigmoid lives in the loss, as ``binary_cross_entropy_with_logits``):

``paper``     a stride-2 conv + BN, three Conv(stride 2)-BN-LReLU blocks, all 5×5, then one fully connected layer
              over the (patch / 16)² map: one score per patch (VirFluoNet);
``patchgan``  pix2pix's 70×70 PatchGAN (Isola et al. 2017): 4×4 convs C64(s2, no BN)-C128(s2)-C256(s2)-C512(s1),
              then a 1-channel 4×4 conv: one score per overlapping 70×70 receptive field.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .configs import VirFluoNetConfig
from .unet import upsample

__all__ = ["PaperDiscriminator", "PatchGANDiscriminator", "VirFluoNetGenerator", "init_gan_weights", "make_discriminator"]

_LEAK = 0.2
#: Standard deviation of the initial conv weights (DCGAN/pix2pix: N(0, 0.02); BN scales N(1, 0.02)). PyTorch's
#: default initialisation saturates the generator's tanh at the start (outputs within 1e-4 of 0 and 1).
_INIT_STD = 0.02


def init_gan_weights(module: nn.Module) -> None:
    """DCGAN initialisation in place: conv weights N(0, 0.02), BN scales N(1, 0.02), biases 0; sub-pixel
    convolutions ICNR with the same spread."""
    for m in module.modules():
        if isinstance(m, SubPixelUp):
            m.icnr_(_INIT_STD)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not _inside_subpixel(module, m):
            nn.init.normal_(m.weight, 0.0, _INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, _INIT_STD)
            nn.init.zeros_(m.bias)


class SubPixelUp(nn.Sequential):
    """×2 upsampling by a sub-pixel convolution (Shi et al. 2016): a 3×3 conv to 4·``c_out`` maps at the coarse
    grid, then :class:`torch.nn.PixelShuffle`. Initialised "ICNR" (Aitken et al. 2017): the four sub-pixel kernels
    start equal, so the untrained layer is a conv followed by nearest-neighbour upsampling — no checkerboard at
    the start, unlike a transposed conv, yet full-resolution detail can be learned (bilinear interpolation
    cannot make it: everything above half the Nyquist frequency would have to come from its interpolation)."""

    def __init__(self, c_in: int, c_out: int, bias: bool):
        super().__init__(nn.Conv2d(c_in, 4 * c_out, 3, padding=1, bias=bias), nn.PixelShuffle(2))
        self.c_out = c_out

    def icnr_(self, std: float) -> None:
        """Draw one N(0, ``std``) kernel per output map and copy it to its four sub-pixels; zero the bias."""
        conv = self[0]
        assert isinstance(conv, nn.Conv2d)
        with torch.no_grad():
            kernel = torch.randn(self.c_out, conv.in_channels, 3, 3) * std
            conv.weight.copy_(kernel.repeat_interleave(4, dim=0))
            if conv.bias is not None:
                conv.bias.zero_()


def _up(c_in: int, c_out: int, upsampling: str, bias: bool) -> nn.Module:
    """Stride-2 upsampling from ``c_in`` to ``c_out`` maps: a 3×3 transposed conv (the paper's; even output size 2n),
    bilinear interpolation and a 3×3 conv, or a sub-pixel convolution (:class:`SubPixelUp`)."""
    if upsampling == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if upsampling == "subpixel":
        return SubPixelUp(c_in, c_out, bias)
    return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
                         nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias))


def _inside_subpixel(root: nn.Module, layer: nn.Module) -> bool:
    return any(isinstance(m, SubPixelUp) and layer is m[0] for m in root.modules())


class VirFluoNetGenerator(nn.Module):
    """``(N, C_in, Y, X)`` in normalised units → ``(N, C_out, Y·scale, X·scale)`` in [0, 1].

    Y and X must be multiples of ``config.size_multiple()`` (2^depth); prediction pads and crops for the user.
    """

    def __init__(self, config: VirFluoNetConfig):
        super().__init__()
        self.config = config
        w = config.widths()
        self.initial = nn.Conv2d(config.in_channels, w[0], 3, stride=2, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.LeakyReLU(_LEAK), nn.Conv2d(w[level - 1], w[level], 3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(w[level]))
            for level in range(1, config.depth))
        self.decoders = nn.ModuleList()
        for level in reversed(range(config.depth - 1)):  # innermost first; each ends at encoder level ``level``
            c_in = w[level + 1] if level == config.depth - 2 else 2 * w[level + 1]
            self.decoders.append(nn.Sequential(nn.ReLU(), _up(c_in, w[level], config.upsampling, bias=False),
                                               nn.BatchNorm2d(w[level])))
        self.head = nn.Sequential(nn.ReLU(), _up(2 * w[0], config.out_channels, config.upsampling, bias=True))
        init_gan_weights(self)

    def start_at(self, mean: Sequence[float]) -> None:
        """Set the output layer's bias so that the untrained generator predicts ``mean`` (per output channel, in
        [0, 1] normalised units, e.g. the training targets' means) instead of ½: b = atanh(2·mean − 1).

        At the paper's learning rate (Adam, 2e-4) a bias moves ≈ 2e-4 per step, so without this a short budget
        (a few hundred steps on a CPU) spends itself shifting a sparse stain's background from ½ towards 0.
        """
        head = self.head[-1]
        conv = head[0] if isinstance(head, SubPixelUp) else head[-1] if isinstance(head, nn.Sequential) else head
        assert isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.bias is not None
        m = torch.as_tensor(list(mean), dtype=conv.bias.dtype).clamp(0.01, 0.99)
        bias = torch.atanh(2.0 * m - 1.0)
        if isinstance(head, SubPixelUp):  # the pixel shuffle makes output map c of conv maps 4c … 4c + 3
            bias = bias.repeat_interleave(4)
        with torch.no_grad():
            conv.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.initial(2.0 * upsample(x, self.config.scale) - 1.0)
        skips = [h]
        for encoder in self.encoders:
            h = encoder(h)
            skips.append(h)
        h = skips.pop()
        for decoder in self.decoders:
            h = torch.cat([decoder(h), skips.pop()], dim=1)
        return 0.5 * (torch.tanh(self.head(h)) + 1.0)


class PaperDiscriminator(nn.Module):
    """VirFluoNet's discriminator: one logit per ``patch_size`` patch of ``(N, C, Y, X)`` (Y = X = patch size)."""

    def __init__(self, in_channels: int, patch_size: Sequence[int], width: int = 32):
        super().__init__()
        if any(p % 16 for p in patch_size):
            raise ValueError(f"the paper's discriminator needs patch sides that are multiples of 16, got {list(patch_size)}")
        widths = [width * 2 ** k for k in range(4)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 5, stride=2, padding=2, bias=False),
                                   nn.BatchNorm2d(widths[0])]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(_LEAK)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1] * (patch_size[0] // 16) * (patch_size[1] // 16), 1)
        init_gan_weights(self)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pair).flatten(1))


class PatchGANDiscriminator(nn.Module):
    """pix2pix's 70×70 PatchGAN: a map of logits, one per overlapping 70×70 window of ``(N, C, Y, X)``."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, w[0], 4, stride=2, padding=1), nn.LeakyReLU(_LEAK),
            nn.Conv2d(w[0], w[1], 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[1]), nn.LeakyReLU(_LEAK),
            nn.Conv2d(w[1], w[2], 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[2]), nn.LeakyReLU(_LEAK),
            nn.Conv2d(w[2], w[3], 4, stride=1, padding=1, bias=False), nn.BatchNorm2d(w[3]), nn.LeakyReLU(_LEAK),
            nn.Conv2d(w[3], 1, 4, stride=1, padding=1))
        init_gan_weights(self)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.layers(pair)


def make_discriminator(kind: str, in_channels: int, patch_size: Sequence[int], width: int) -> nn.Module:
    """The discriminator ``kind`` (``paper`` or ``patchgan``) for pairs of ``in_channels`` channels (generator
    input + target) on ``patch_size`` patches; ``width`` is its first layer's feature maps."""
    if kind == "patchgan":
        return PatchGANDiscriminator(in_channels, width)
    return PaperDiscriminator(in_channels, patch_size, width)
