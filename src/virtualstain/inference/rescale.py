"""Apply a model to images of another pixel size: resample the input to the model's grid and the prediction back.

PICS and FRM apply networks trained at one magnification to images of another this way. The input
``(C, [Z,] Y, X)`` is resampled in Y and X only by ``f = image pixel size / model pixel size`` (f > 1: the
image is coarser than training, so it is upsampled), bilinearly, with a Gaussian anti-aliasing filter
when shrinking (:func:`skimage.transform.resize`); the prediction comes back to exactly the input's
shape (times the model's super-resolution factor) the same way. Ratios beyond :data:`MAX_RESCALE` are
refused: the optics then differ too much for resampling to stand in for the training magnification.
"""

from __future__ import annotations

import numpy as np

from ..data.acquisition import TOLERANCE
from ..errors import UserError

#: Largest factor (either way) between an image's pixel size and the model's that is resampled.
MAX_RESCALE = 4.0


def rescale_factor(image_px: float | None, model_px: float | None, allowed: bool, source: str,
                   super_resolution: bool = False) -> float | None:
    """``image_px / model_px`` when the image must be resampled to the model's grid, else None.

    A super-resolution model is never resampled for: it learned one relation between the camera's pixels and
    the optics (DL-SRQPI's binning), which resampling would not reproduce.

    Raises
    ------
    UserError
        The pixel sizes differ beyond :data:`~virtualstain.data.acquisition.TOLERANCE` and ``allowed`` is False
        or the model is a super-resolution one, or they differ by more than :data:`MAX_RESCALE`×.
    """
    if not image_px or not model_px:
        return None
    factor = image_px / model_px
    if abs(factor - 1) <= TOLERANCE:
        return None
    if super_resolution:
        raise UserError(f"{source}: pixel size {image_px:g} µm but the model was trained at {model_px:g} µm; rescale "
                        f"the image by {factor:.3g} first, or retrain")
    if not allowed:
        raise UserError(f"{source}: pixel size {image_px:g} µm but the model was trained at {model_px:g} µm; leave "
                        f"rescaling on (drop --no-rescale) to resample by {factor:.3g}, rescale the image first, or "
                        "retrain")
    if not 1 / MAX_RESCALE <= factor <= MAX_RESCALE:
        raise UserError(f"{source}: pixel size {image_px:g} µm is {max(factor, 1 / factor):.3g}× the model's "
                        f"{model_px:g} µm, beyond the {MAX_RESCALE:g}× that resampling may bridge; train a model at "
                        "this magnification")
    return float(factor)


def resample_lateral(array: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """``array`` ``(C, [Z,] Y, X)`` resampled in Y and X to ``shape_yx`` (bilinear; anti-aliased when shrinking)."""
    from skimage.transform import resize

    lead = array.shape[:-2]
    shrink = shape_yx[0] < array.shape[-2] or shape_yx[1] < array.shape[-1]
    flat = array.reshape(-1, *array.shape[-2:])
    out = np.stack([resize(plane, shape_yx, order=1, mode="reflect", anti_aliasing=shrink, preserve_range=True)
                    for plane in flat])
    return out.reshape(*lead, *shape_yx).astype(np.float32)


def model_grid_shape(shape_yx: tuple[int, ...], factor: float) -> tuple[int, int]:
    """The Y, X size of an image of ``shape_yx`` on the model's grid (at least one pixel)."""
    return max(1, round(shape_yx[-2] * factor)), max(1, round(shape_yx[-1] * factor))
