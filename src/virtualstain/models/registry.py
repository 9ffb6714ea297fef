"""Named network configurations.

A model is found here by name; nothing is ever imported from a string in a config
or a bundle. Each entry builds a :class:`~virtualstain.models.unet.UNetConfig` from
the channel counts and optional overrides.

``fnet``  depth 4, widths 32→512, linear output (Ounkomol et al. 2018).
``pics``  depth 4, widths 16→256 (¼ of the original U-Net's 64→1024, ≈2.0 M parameters),
          BN before activation, output = input + learned residual (Kandel et al. 2020).
``sr_unet`` DL-SRQPI (Zhou et al. 2024): bicubic ×k of the input, then a U-Net of depth 4,
          widths 16→256, BN + ReLU, linear output, no residual (intensity in, phase out).
``srcnn`` the SRCNN baseline (Dong et al. 2016): bicubic ×k, then 9-1-5 convolutions, 64/32 maps.
``unet``  the same family with every field free (defaults as ``fnet``).

The super-resolution factor ``scale`` comes from the data (targets k× larger than inputs), so
every architecture can be trained on k× pairs; ``sr_unet`` and ``srcnn`` are the ones made for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

from torch import nn

from ..errors import UserError
from .srcnn import SRCNN
from .unet import UNet, UNetConfig

_PRESETS: dict[str, dict] = {
    "fnet": {"depth": 4, "base_width": 32, "max_width": 512, "residual": False},
    "pics": {"depth": 4, "base_width": 16, "max_width": 256, "residual": True},
    "sr_unet": {"depth": 4, "base_width": 16, "max_width": 256, "residual": False},
    "srcnn": {"family": "srcnn", "depth": 0, "base_width": 64, "max_width": 64, "residual": False},
    "unet": {},
}

ARCHITECTURES: dict[str, Callable[[UNetConfig], nn.Module]] = {
    name: SRCNN if preset.get("family") == "srcnn" else UNet for name, preset in _PRESETS.items()
}


def available() -> list[str]:
    """Names of the registered architectures."""
    return sorted(ARCHITECTURES)


def make_config(name: str, in_channels: int, out_channels: int, spatial_dims: int = 2, scale: int = 1,
                **overrides) -> UNetConfig:
    """The configuration of architecture ``name`` for the given channels and super-resolution ``scale``.

    ``overrides`` (e.g. ``depth=3``, ``base_width=8``, ``downsample_z=False``) replace
    the preset's values; unknown keys raise a :class:`UserError` naming the field.
    """
    if name not in _PRESETS:
        raise UserError(f"model.architecture {name!r} is not known; choose one of {available()}")
    allowed = {f.name for f in fields(UNetConfig)}
    unknown = set(overrides) - allowed
    if unknown:
        raise UserError(f"model: unknown setting(s) {sorted(unknown)} for {name!r}; allowed: {sorted(allowed)}")
    if scale != 1 and spatial_dims != 2:
        raise UserError(f"targets {scale}× larger than the inputs need a 2D model (model.spatial_dims: 2)")
    if _PRESETS[name].get("family") == "srcnn" and spatial_dims != 2:
        raise UserError(f"model.architecture {name!r} is 2D only; set model.spatial_dims: 2")
    base = UNetConfig(in_channels=in_channels, out_channels=out_channels, spatial_dims=spatial_dims, scale=scale)
    config = replace(base, **{**_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})
    return config


def build(name: str, config: UNetConfig) -> nn.Module:
    """Instantiate architecture ``name`` with ``config``."""
    if name not in ARCHITECTURES:
        raise UserError(f"model.architecture {name!r} is not known; choose one of {available()}")
    return ARCHITECTURES[name](config)
