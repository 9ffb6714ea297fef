"""Receptive field of the networks, computed from their architecture (no torch needed).

For every output pixel of a U-Net, the interval of input pixels it can depend on is
propagated backwards through the layers: a k×k conv widens an interval by (k−1)/2 on each
side; a stride-f, kernel-f transposed conv maps output o to input ⌊o/f⌋; the bilinear decoder
(``upsampling="bilinear"``) first widens by 1 (its 3×3 conv), then maps fine o to the coarse
pixels ⌊s⌋ and ⌊s⌋ + 1 around s = (o + ½)/f − ½ (``align_corners=False``; only ⌊s⌋ when s is whole,
as for f = 1 along a Z that is not downsampled); a stride-f,
kernel-f down conv maps output i to inputs [f·i, f·i + f − 1]; at each encoder level the
interval needed by the skip connection is merged with the one needed by the path below.
Taking the worst case over the f^depth alignments of an output pixel gives the exact
one-sided reach, which is the tiling margin: a tile extended by at least this many pixels
on each side predicts its core exactly as the whole image would.

A super-resolution network (``scale`` k) first upsamples its input bicubically: output pixel o
then depends on upsampled pixels o ± r, which depend on input pixels ⌊(o ± r)/k⌋ − 2 …
⌊(o ± r)/k⌋ + 2, so the reach in input pixels is ⌈r/k⌉ + 2. Receptive fields and margins are
given in **input** pixels. Each configuration type gives its body's reach
(:meth:`~virtualstain.models.configs.NetworkConfig.body_reach`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .configs import NetworkConfig

_CONVS_PER_BLOCK = 2
_HALF_KERNEL = 1  # 3×3 convolutions
_BICUBIC_REACH = 2  # input pixels on either side used by bicubic interpolation


def _coarse_interval(lo: int, hi: int, factor: int, upsampling: str) -> tuple[int, int]:
    """Coarse pixels [lo, hi] on which the decoder's upsampling of fine pixels [lo, hi] depends (one axis)."""
    if upsampling == "transposed":  # kernel f, stride f: fine o comes from coarse ⌊o/f⌋ only
        return lo // factor, hi // factor
    lo, hi = lo - _HALF_KERNEL, hi + _HALF_KERNEL  # the 3×3 conv after the upsampling
    # s = (o + ½)/f − ½ = (2o + 1 − f) / 2f; the weight of ⌊s⌋ + 1 is the fraction of s, 0 when s is whole
    top, rest = divmod(2 * hi + 1 - factor, 2 * factor)
    return (2 * lo + 1 - factor) // (2 * factor), top + (rest != 0)


def _reach_one_axis(depth: int, factor: int, position: int, upsampling: str) -> tuple[int, int]:
    """Input interval [lo, hi] (level-0 pixels) on which output ``position`` depends."""
    grow = _CONVS_PER_BLOCK * _HALF_KERNEL
    lo = hi = position
    lo, hi = lo - _HALF_KERNEL, hi + _HALF_KERNEL  # output head conv
    skips: list[tuple[int, int]] = []
    for _level in range(depth):  # decoders, finest to coarsest, then the upsampling below each
        lo, hi = lo - grow, hi + grow
        skips.append((lo, hi))
        lo, hi = _coarse_interval(lo, hi, factor, upsampling)
    lo, hi = lo - grow, hi + grow  # bottleneck
    for level in reversed(range(depth)):  # down conv, merge skip, encoder block
        lo, hi = factor * lo, factor * hi + factor - 1
        lo, hi = min(lo, skips[level][0]), max(hi, skips[level][1])
        lo, hi = lo - grow, hi + grow
    return lo, hi


def unet_body_reach(depth: int, factor: int, upsampling: str = "transposed") -> int:
    """Largest one-sided reach (pixels) of a U-Net output pixel along an axis downsampled by ``factor`` per level.

    ``upsampling`` is the decoder's: ``"transposed"`` (2×2 transposed conv) or ``"bilinear"`` (interpolation
    with ``align_corners=False``, then a 3×3 conv).
    """
    worst = 0
    for p in range(factor ** depth):
        lo, hi = _reach_one_axis(depth, factor, p, upsampling)
        worst = max(worst, p - lo, hi - p)
    return worst


def receptive_field_reach(config: NetworkConfig) -> tuple[int, ...]:
    """Largest one-sided reach (input pixels) of an output pixel into the input, per spatial axis."""
    if config.scale == 1:
        return config.body_reach()
    return tuple(-(-r // config.scale) + _BICUBIC_REACH for r in config.body_reach())


def receptive_field(config: NetworkConfig) -> tuple[int, ...]:
    """Full receptive-field width (pixels) per spatial axis: 2·reach + 1."""
    return tuple(2 * r + 1 for r in receptive_field_reach(config))


def tiling_margin(config: NetworkConfig) -> tuple[int, ...]:
    """Reach rounded up to the network's size multiple, per spatial axis (pixels)."""
    return tuple(-(-r // m) * m for r, m in zip(receptive_field_reach(config), config.size_multiple()))


def _transposed3_coarse(lo: int, hi: int) -> tuple[int, int]:
    """Coarse pixels on which fine pixels [lo, hi] of a 3×3, stride-2 transposed conv (padding 1, output padding 1)
    depend: fine o = 2i − 1 + k for taps k = 0, 1, 2, so i ∈ [⌈(o − 1)/2⌉, ⌊(o + 1)/2⌋]."""
    return -((1 - lo) // 2), (hi + 1) // 2


def _virfluonet_interval(depth: int, position: int, upsampling: str) -> tuple[int, int]:
    """Input interval [lo, hi] on which output ``position`` of the VirFluoNet generator depends (one axis)."""
    def coarse(lo: int, hi: int) -> tuple[int, int]:
        if upsampling == "transposed":
            return _transposed3_coarse(lo, hi)
        if upsampling == "subpixel":  # fine o is a sub-pixel of coarse ⌊o/2⌋, made by a 3×3 conv there
            return lo // 2 - 1, hi // 2 + 1
        return _coarse_interval(lo, hi, 2, "bilinear")

    needed: list[tuple[int, int]] = []  # per encoder output e_l (level l + 1): the interval the decoder reads
    lo, hi = coarse(position, position)  # the last upsampling, to the input grid
    for _level in range(depth - 1):  # decoder inputs cat(up_l, e_l), finest first
        needed.append((lo, hi))
        lo, hi = coarse(lo, hi)
    needed.append((lo, hi))  # the innermost encoder output feeds the decoder directly
    for level in range(depth - 1, 0, -1):  # e_l = conv3 s2 of e_(l−1): output i reads [2i − 1, 2i + 1]
        lo, hi = 2 * needed[level][0] - 1, 2 * needed[level][1] + 1
        needed[level - 1] = (min(lo, needed[level - 1][0]), max(hi, needed[level - 1][1]))
    return 2 * needed[0][0] - 1, 2 * needed[0][1] + 1  # the initial stride-2 conv


def virfluonet_body_reach(depth: int, upsampling: str = "transposed") -> int:
    """Largest one-sided reach (pixels) of a VirFluoNet generator output pixel (3×3 stride-2 convs down,
    ``upsampling`` up, skips at every level), over the 2^depth alignments of an output pixel."""
    worst = 0
    for p in range(2 ** depth):
        lo, hi = _virfluonet_interval(depth, p, upsampling)
        worst = max(worst, p - lo, hi - p)
    return worst
