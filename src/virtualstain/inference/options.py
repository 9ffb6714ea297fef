"""How to run a prediction: one options object, passed whole from the command line to the tiles."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import UserError

#: What the network sees beyond the image's edges (:attr:`PredictOptions.border`).
BORDERS = ("mirror", "none")
#: How tiles are joined (:attr:`PredictOptions.stitch`).
STITCHES = ("exact", "blend")
#: Inference backends (:mod:`~virtualstain.inference.engines`) and arithmetic; ``auto`` picks by measurement.
BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
#: Default largest deviation of an ``auto`` engine from fp32 torch, as a fraction of the output range.
MAX_DEVIATION = 1e-3
#: Window size (input px) of blended stitching when neither ``tile_size`` nor memory asks for smaller windows.
BLEND_TILE_PX = 256


@dataclass(frozen=True)
class PredictOptions:
    """Settings of :func:`~virtualstain.inference.predict.predict` that do not change the model's answer
    beyond float rounding (except ``tta``, ``match_brightness`` and ``border``, which are part of the method).

    Attributes
    ----------
    tile_size : int, sequence of int or None
        Tile core in YX input pixels; 0 = whole image; None = chosen from the memory budget.
    tta : bool
        Average over the 8 flips/rotations in YX (test-time augmentation).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
    memory_budget_mb : float, optional
        Memory for one tile (default 1024 MB on CPU, half the free GPU memory on CUDA).
    rescale : bool
        An image whose pixel size differs from the model's is resampled to the model's grid and the prediction
        back (:mod:`~virtualstain.inference.rescale`, at most 4× either way); False refuses it instead.
    backend : {"torch", "auto", "onnxruntime", "openvino"}
        Which engine runs the network. ``"torch"`` with ``precision="fp32"`` (the default here) is the reference;
        ``"auto"`` (the command line's default) measures every installed engine on a probe tile and takes the
        fastest whose deviation from the reference is at most ``max_deviation``
        (:mod:`~virtualstain.inference.backend_choice`; cached per model and machine).
    precision : {"fp32", "auto", "bf16", "fp16"}
        Arithmetic of the engine; ``"auto"`` lets the measurement choose.
    max_deviation : float
        Largest deviation from fp32 torch (fraction of the reference's output range) an ``auto`` choice accepts.
    match_brightness : bool
        Scale each input channel so that its mean equals the training inputs' mean (DL-SRQPI's
        brightness correction C = R·S̄/R̄), for images taken with another lamp power, exposure or gain.
    border : {"mirror", "none"}
        What the network sees beyond the image's edges in Y and X. ``"mirror"``: the image is reflect-padded
        on both sides by the network's reach rounded up to its size multiple, at most 64 px rounded up
        likewise (:func:`~virtualstain.inference.tiling.mirror_margin`; Z is not padded), and the prediction
        cropped back, so border pixels see mirrored image content. ``"none"``: the network's zero padding,
        as virtualstain 0.1.0 predicted (less work; pixels within the reach of an edge differ).
    stitch : {"exact", "blend"}
        ``"exact"``: tiles with margins ≥ the receptive field, equal to whole-image prediction. ``"blend"``:
        VirFluoNet's alpha-blended windows overlapping by ``blend_overlap`` px (windows of ``tile_size``, default
        256 px; see :mod:`~virtualstain.inference.blending`) — not equal to whole-image prediction.
    blend_overlap : int
        Overlap (input px) of neighbouring windows with ``stitch="blend"``.
    progress : bool
        Show a progress bar over tiles.
    """

    tile_size: int | Sequence[int] | None = None
    tta: bool = False
    device: str | None = None
    memory_budget_mb: float | None = None
    rescale: bool = True
    backend: str = "torch"
    precision: str = "fp32"
    max_deviation: float = MAX_DEVIATION
    match_brightness: bool = False
    border: Literal["mirror", "none"] = "mirror"
    stitch: Literal["exact", "blend"] = "exact"
    blend_overlap: int = 32
    progress: bool = False

    def __post_init__(self) -> None:
        """Refuse settings that cannot work (a budget of 0 MB, a negative tile, an unknown border), naming the option."""
        budget = self.memory_budget_mb
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not 0 < budget < math.inf):
            raise UserError(f"--memory-mb {budget} must be a positive number of MB (e.g. 1024); leave it out for "
                            "the default (1 GB on CPU, half the free GPU memory on CUDA)")
        size = self.tile_size
        tiles: list = [size] if isinstance(size, (int, numbers.Integral)) else list(size or [])
        if any(isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0 for t in tiles):
            raise UserError(f"--tile-size {self.tile_size} must be a whole number ≥ 0 (0 = whole image; leave it out "
                            "to choose tiles from the memory budget)")
        if self.border not in BORDERS:
            raise UserError(f"--border {self.border!r} must be one of {list(BORDERS)} (mirror: the network sees the "
                            "image mirrored beyond its edges; none: zeros, as virtualstain 0.1.0)")

        if self.backend not in ("auto", *BACKENDS):
            raise UserError(f"--backend {self.backend!r} must be one of {['auto', *BACKENDS]}")
        if self.precision not in ("auto", *PRECISIONS):
            raise UserError(f"--precision {self.precision!r} must be one of {['auto', *PRECISIONS]}")
        deviation = self.max_deviation
        if isinstance(deviation, bool) or not isinstance(deviation, (int, float)) or not 0 <= deviation < 1:
            raise UserError(f"--max-deviation {deviation} must be a fraction of the output range in [0, 1) "
                            f"(default {MAX_DEVIATION:g})")
        if self.stitch not in STITCHES:
            raise UserError(f"--stitch {self.stitch!r} must be one of {list(STITCHES)} (exact: equal to whole-image "
                            "prediction; blend: VirFluoNet's alpha-blended windows)")
        if isinstance(self.blend_overlap, bool) or not isinstance(self.blend_overlap, numbers.Integral) or \
                self.blend_overlap < 0:
            raise UserError(f"--blend-overlap {self.blend_overlap} must be a whole number of pixels ≥ 0 (e.g. 32)")

    def replace(self, **changes) -> PredictOptions:
        """A copy with ``changes``; an unknown name raises ``TypeError`` listing the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown prediction option(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)
