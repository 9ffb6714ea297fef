"""How to run a prediction: one options object, passed whole from the command line to the tiles."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PredictOptions:
    """Settings of :func:`~virtualstain.inference.predict.predict` that do not change the model's answer
    beyond float rounding (except ``tta`` and ``match_brightness``, which are part of the method).

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
    amp : bool
        float16 autocast on CUDA.
    match_brightness : bool
        Scale each input channel so that its mean equals the training inputs' mean (DL-SRQPI's
        brightness correction C = R·S̄/R̄), for images taken with another lamp power, exposure or gain.
    progress : bool
        Show a progress bar over tiles.
    """

    tile_size: int | Sequence[int] | None = None
    tta: bool = False
    device: str | None = None
    memory_budget_mb: float | None = None
    amp: bool = False
    match_brightness: bool = False
    progress: bool = False

    def replace(self, **changes) -> PredictOptions:
        """A copy with ``changes``; an unknown name raises ``TypeError`` listing the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown prediction option(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)
