"""One configuration type per architecture, each with its own constraints (pure Python, no torch).

Every configuration knows what the tiler and the memory planner need from it:

``size_multiple()``         each spatial axis of the network input must be a multiple of this;
``body_reach()``            one-sided receptive-field reach of the network body (after any upsampling);
``bytes_per_pixel()``       inference memory per input pixel (calibrated on peak RSS);
``describe()``              one line for ``virtualstain info``.

``scale`` k > 1 makes a super-resolution network: the input is upsampled bicubically k× in Y and X
first, so reaches in input pixels are ⌈r/k⌉ + 2 (:func:`~virtualstain.models.receptive_field.receptive_field_reach`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

from ..errors import UserError
from .receptive_field import unet_body_reach, virfluonet_body_reach


@dataclass(frozen=True)
class NetworkConfig:
    """What every architecture shares: channels, dimensionality and super-resolution factor.

    Attributes
    ----------
    in_channels, out_channels : int
        Channels of the input and the prediction.
    spatial_dims : {2, 3}
        2D ``(N, C, Y, X)`` or 3D ``(N, C, Z, Y, X)`` tensors.
    scale : int
        Output pixels per input pixel along Y and X (1 = same grid; k > 1 = k× super-resolution by
        bicubic upsampling of the input before the network body, 2D only).
    """

    family: ClassVar[str] = ""

    in_channels: int = 1
    out_channels: int = 1
    spatial_dims: int = 2
    scale: int = 1

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise UserError(f"model.spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.scale < 1:
            raise UserError(f"scale must be a whole number ≥ 1, got {self.scale}")
        if self.scale != 1 and self.spatial_dims != 2:
            raise UserError(f"targets {self.scale}× larger than the inputs need a 2D model (model.spatial_dims: 2)")

    def size_multiple(self) -> tuple[int, ...]:
        raise NotImplementedError

    def body_reach(self) -> tuple[int, ...]:
        raise NotImplementedError

    def bytes_per_pixel(self) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The fields, plus ``family`` (which configuration type to rebuild)."""
        return {"family": self.family, **asdict(self)}


@dataclass(frozen=True)
class UNetConfig(NetworkConfig):
    """Architecture of a :class:`~virtualstain.models.unet.UNet`.

    Attributes
    ----------
    depth : int
        Number of stride-2 downsamplings.
    base_width : int
        Feature maps at the first level; doubled at each level down.
    max_width : int
        Upper limit on feature maps.
    residual : bool
        Output = input (or its 1×1 projection) + learned residual (PICS).
    downsample_z : bool
        For 3D: downsample Z too (False = anisotropic, Z kept at full resolution).
    batchnorm : bool
        Batch normalisation before every activation.
    upsampling : {"transposed", "bilinear"}
        Decoder upsampling: a 2×2(×2) transposed conv of stride 2 (the default, as in bundles saved before
        this field existed), or bilinear/trilinear interpolation followed by a 3×3(×3) conv, which has no
        pixel-level checkerboard (presets of the registry use it).
    """

    family: ClassVar[str] = "unet"
    UPSAMPLING: ClassVar[tuple[str, ...]] = ("transposed", "bilinear")

    depth: int = 4
    base_width: int = 32
    max_width: int = 512
    residual: bool = False
    downsample_z: bool = True
    batchnorm: bool = True
    upsampling: str = "transposed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.upsampling not in self.UPSAMPLING:
            raise UserError(f"model.upsampling must be one of {list(self.UPSAMPLING)}, got {self.upsampling!r}")

    def widths(self) -> list[int]:
        """Feature maps per level, finest first."""
        return [min(self.base_width * 2 ** level, self.max_width) for level in range(self.depth + 1)]

    def factors(self) -> tuple[int, ...]:
        """Downsampling factor per spatial axis at each level ((Z,) Y, X)."""
        if self.spatial_dims == 2:
            return (2, 2)
        return (2 if self.downsample_z else 1, 2, 2)

    def size_multiple(self) -> tuple[int, ...]:
        """2^depth per downsampled axis; with ``scale`` k the upsampled input must fit the grid, so the
        input's Y and X need only be multiples of 2^depth / gcd(2^depth, k)."""
        multiple = [f ** self.depth for f in self.factors()]
        for axis in (-2, -1):
            multiple[axis] //= math.gcd(multiple[axis], self.scale)
        return tuple(multiple)

    def body_reach(self) -> tuple[int, ...]:
        return tuple(unet_body_reach(self.depth, f, self.upsampling) for f in self.factors())

    def bytes_per_pixel(self) -> float:
        """The skips of every level, two working maps at full width, input and output (float32), times
        scale². Calibrated against peak RSS of the folded network (≈250 B/px for ``pics``; see
        benchmarks/bench_predict.py)."""
        shrink = math.prod(self.factors())
        widths = self.widths()
        skips = sum(w / shrink ** level for level, w in enumerate(widths))
        return 4.0 * (skips + 2 * widths[0] + self.in_channels + self.out_channels) * self.scale ** 2

    def describe(self) -> str:
        return (f"{self.spatial_dims}D U-Net, depth {self.depth}, widths {self.widths()}, residual {self.residual}, "
                f"{self.upsampling} upsampling")


@dataclass(frozen=True)
class SRCNNConfig(NetworkConfig):
    """Architecture of :class:`~virtualstain.models.srcnn.SRCNN` (Dong et al. 2016), 2D only.

    Attributes
    ----------
    base_width : int
        Feature maps of the first layer; the second has ``base_width // 2``.
    """

    family: ClassVar[str] = "srcnn"
    #: (kernel size, ReLU after) of the three layers: 9×9, 1×1, 5×5.
    LAYERS: ClassVar[tuple[tuple[int, bool], ...]] = ((9, True), (1, True), (5, False))

    base_width: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spatial_dims != 2:
            raise UserError("model.architecture 'srcnn' is 2D only; set model.spatial_dims: 2")

    def size_multiple(self) -> tuple[int, ...]:
        return (1,) * self.spatial_dims  # "same" convolutions: any size

    def body_reach(self) -> tuple[int, ...]:
        return (sum(kernel // 2 for kernel, _ in self.LAYERS),) * self.spatial_dims

    def bytes_per_pixel(self) -> float:
        """Two feature maps of the first layer's width, input and output (float32), times scale²."""
        return 4.0 * (2 * self.base_width + self.in_channels + self.out_channels) * self.scale ** 2

    def describe(self) -> str:
        return f"SRCNN, 9-1-5 convolutions, {self.base_width}/{max(1, self.base_width // 2)} maps"


@dataclass(frozen=True)
class VirFluoNetConfig(NetworkConfig):
    """Architecture of the VirFluoNet generator (:class:`~virtualstain.models.virfluonet.VirFluoNetGenerator`), 2D.

    Attributes
    ----------
    depth : int
        Stride-2 levels: the initial stride-2 conv plus ``depth − 1`` encoder blocks; the decoder has as many
        stride-2 upsamplings, the last one back to the input grid.
    base_width : int
        Feature maps after the initial conv; doubled per level down.
    max_width : int
        Upper limit on feature maps.
    upsampling : {"transposed", "bilinear", "subpixel"}
        Decoder: a 3×3 transposed conv of stride 2 (the paper's), bilinear interpolation + a 3×3 conv, or a 3×3 conv
        to 4× the maps + pixel shuffle (sub-pixel convolution, ICNR-initialised).
    """

    family: ClassVar[str] = "virfluonet"
    UPSAMPLING: ClassVar[tuple[str, ...]] = ("transposed", "bilinear", "subpixel")

    depth: int = 6
    base_width: int = 32
    max_width: int = 256
    upsampling: str = "transposed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spatial_dims != 2:
            raise UserError("model.architecture 'cgan' (the VirFluoNet generator) is 2D only; set model.spatial_dims: 2")
        if self.depth < 2:
            raise UserError(f"model.depth must be ≥ 2 for 'cgan' (an initial stride-2 conv and ≥ 1 encoder block), "
                            f"got {self.depth}")
        if self.upsampling not in self.UPSAMPLING:
            raise UserError(f"model.upsampling must be one of {list(self.UPSAMPLING)}, got {self.upsampling!r}")

    def widths(self) -> list[int]:
        """Feature maps of the initial conv and of each encoder block, finest first (``depth`` values)."""
        return [min(self.base_width * 2 ** level, self.max_width) for level in range(self.depth)]

    def size_multiple(self) -> tuple[int, ...]:
        multiple = 2 ** self.depth
        return (multiple // math.gcd(multiple, self.scale),) * 2

    def body_reach(self) -> tuple[int, ...]:
        return (virfluonet_body_reach(self.depth, self.upsampling),) * 2

    def bytes_per_pixel(self) -> float:
        """Encoder and decoder maps of every level (they live at once through the skips), input and output,
        float32, times scale²; all levels are at half resolution or coarser."""
        maps = sum(2 * w / 4 ** (level + 1) for level, w in enumerate(self.widths()))
        return 4.0 * (2 * maps + self.in_channels + self.out_channels) * self.scale ** 2

    def describe(self) -> str:
        return (f"VirFluoNet cGAN generator (2D U-Net, tanh output), depth {self.depth}, widths {self.widths()}, "
                f"{self.upsampling} upsampling")


#: Configuration type per ``family`` (as recorded in ``model.json``).
CONFIG_TYPES: dict[str, type[NetworkConfig]] = {c.family: c for c in (UNetConfig, SRCNNConfig, VirFluoNetConfig)}


def config_from_dict(data: dict) -> NetworkConfig:
    """Rebuild a configuration from :meth:`NetworkConfig.to_dict` output."""
    data = dict(data)
    family = data.pop("family", "unet")
    if family not in CONFIG_TYPES:
        raise UserError(f"network family {family!r} is not known; choose one of {sorted(CONFIG_TYPES)}")
    return CONFIG_TYPES[family](**data)
