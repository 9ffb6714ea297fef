"""Named network configurations.

A model is found here by name; nothing is ever imported from a string in a config
or a bundle. Each entry pairs a configuration type with its network and a preset, and
builds the configuration from the channel counts and optional overrides.

``fnet``    U-Net, depth 4, widths 32→512, linear output (Ounkomol et al. 2018).
``pics``    U-Net, depth 4, widths 16→256 (¼ of the original U-Net's 64→1024, ≈2.0 M parameters
            with its transposed convolutions, ≈2.2 M with the bilinear decoder), BN before activation,
            output = input + learned residual (Kandel et al. 2020).
``sr_unet`` DL-SRQPI (Zhou et al. 2024): bicubic ×k of the input, then a U-Net of depth 4,
            widths 16→256, BN + ReLU, linear output, no residual (intensity in, phase out).
``srcnn``   the SRCNN baseline (Dong et al. 2016): bicubic ×k, then 9-1-5 convolutions, 64/32 maps.
``unet``    the U-Net with every field free (defaults as ``fnet``).
``cgan``    VirFluoNet's generator (2D U-Net, initial stride-2 conv, 3×3 kernels, tanh output), depth 6, widths
            32→256, sub-pixel-convolution decoder (the paper's 3×3 transposed convs checkerboard, and bilinear
            upsampling after the initial stride-2 conv cannot make detail above half the Nyquist frequency;
            ``upsampling: transposed | bilinear`` give those); trained adversarially with a discriminator
            (:mod:`virtualstain.training.adversarial`).

Every U-Net preset decodes with ``upsampling="bilinear"`` (interpolation + 3×3 conv) instead of the
papers' 2×2 transposed convolutions, whose period-2 checkerboard issue 13 measured at 26–40× the
target's Nyquist power (:func:`~virtualstain.metrics.nyquist_power_ratio`). ``UNetConfig`` itself
keeps ``"transposed"`` as default, so bundles saved without the field load as they were trained.

The super-resolution factor ``scale`` comes from the data (targets k× larger than inputs), so
every architecture can be trained on k× pairs; ``sr_unet`` and ``srcnn`` are the ones made for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from torch import nn

from ..errors import UserError
from .configs import NetworkConfig, SRCNNConfig, UNetConfig, VirFluoNetConfig
from .srcnn import SRCNN
from .unet import UNet
from .virfluonet import VirFluoNetGenerator


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its configuration type, its network and the preset's values."""

    config_type: type[NetworkConfig]
    network: Callable[..., nn.Module]
    preset: dict


ARCHITECTURES: dict[str, Architecture] = {
    "cgan": Architecture(VirFluoNetConfig, VirFluoNetGenerator, {"depth": 6, "base_width": 32, "max_width": 256,
                                                                 "upsampling": "subpixel"}),
    "fnet": Architecture(UNetConfig, UNet, {"depth": 4, "base_width": 32, "max_width": 512, "residual": False,
                                            "upsampling": "bilinear"}),
    "pics": Architecture(UNetConfig, UNet, {"depth": 4, "base_width": 16, "max_width": 256, "residual": True,
                                            "upsampling": "bilinear"}),
    "sr_unet": Architecture(UNetConfig, UNet, {"depth": 4, "base_width": 16, "max_width": 256, "residual": False,
                                               "upsampling": "bilinear"}),
    "srcnn": Architecture(SRCNNConfig, SRCNN, {"base_width": 64}),
    "unet": Architecture(UNetConfig, UNet, {"upsampling": "bilinear"}),
}


def available() -> list[str]:
    """Names of the registered architectures."""
    return sorted(ARCHITECTURES)


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise UserError(f"model.architecture {name!r} is not known; choose one of {available()}")
    return ARCHITECTURES[name]


def make_config(name: str, in_channels: int, out_channels: int, spatial_dims: int = 2, scale: int = 1,
                **overrides) -> NetworkConfig:
    """The configuration of architecture ``name`` for the given channels and super-resolution ``scale``.

    ``overrides`` (e.g. ``depth=3``, ``base_width=8``, ``downsample_z=False``) replace the preset's
    values; None means "keep the preset". A setting that is no field of any architecture, or that
    this architecture does not have (``depth`` for ``srcnn``), raises a :class:`UserError` naming it.
    """
    arch = _architecture(name)
    own = {f.name for f in fields(arch.config_type)}
    known = set().union(*({f.name for f in fields(a.config_type)} for a in ARCHITECTURES.values()))
    unknown = set(overrides) - known
    if unknown:
        raise UserError(f"model: unknown setting(s) {sorted(unknown)} for {name!r}; allowed: {sorted(own)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    foreign = set(given) - own
    if foreign:
        raise UserError(f"model: setting(s) {sorted(foreign)} do not apply to {name!r}; remove them "
                        f"(it takes {sorted(own - {'in_channels', 'out_channels', 'spatial_dims', 'scale'})})")
    return arch.config_type(in_channels=in_channels, out_channels=out_channels, spatial_dims=spatial_dims,
                            scale=scale, **{**arch.preset, **given})


def build(name: str, config: NetworkConfig) -> nn.Module:
    """Instantiate architecture ``name`` with ``config`` (of that architecture's configuration type)."""
    arch = _architecture(name)
    if not isinstance(config, arch.config_type):
        raise UserError(f"model.architecture {name!r} needs a {arch.config_type.__name__}, got "
                        f"{type(config).__name__}; the bundle is inconsistent — retrain")
    return arch.network(config)
