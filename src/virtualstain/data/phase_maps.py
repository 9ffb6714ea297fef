"""Phase maps on disk: the one reader and the one writer.

A phase map is a float32 OME-TIFF in radians whose JSON description records ``quantity``,
``unit`` (``rad``), ``method`` and, when known, ``wavelength_um`` and ``pixel_size_um``
(``virtualstain phase`` and ``virtualstain simulate`` write them). The reader returns a
:class:`PhaseMap` and refuses what is not radians, so dry mass and simulation never read
degrees or optical path lengths as phase.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .io import check_finite, read_image, too_large, write_tiff

#: |phase| above this is not radians of a cell (degrees, nm of optical path, or raw counts).
MAX_PLAUSIBLE_PHASE_RAD = 100.0


@dataclass
class PhaseMap:
    """A phase map as read from a file.

    Attributes
    ----------
    phase : numpy.ndarray
        ``(T, Y, X)`` float64 phase in radians (T = 1 for a single map).
    wavelength_um, pixel_size_um : float or None
        As recorded by the file, µm.
    description : dict
        The file's metadata.
    """

    phase: np.ndarray
    wavelength_um: float | None = None
    pixel_size_um: float | None = None
    description: dict = field(default_factory=dict)


def read_phase_map(path: str | os.PathLike, *, time_lapse: bool = False) -> PhaseMap:
    """Read a phase map in radians: ``(Y, X)``, or also a time-lapse ``(T, Y, X)`` when ``time_lapse``.

    Raises
    ------
    UserError
        Missing or corrupt file, wrong shape, non-numeric pixels, NaN, a unit other than ``rad``
        recorded in the file, or values too large to be radians of a cell.
    """
    array, meta = read_image(path)
    array = np.squeeze(array)
    if time_lapse and array.ndim not in (2, 3):
        raise UserError(f"{path}: a phase map must be (Y, X) or a time-lapse (T, Y, X), got shape {array.shape}")
    if not time_lapse and array.ndim != 2:
        raise UserError(f"{path}: the phase map must be one 2D image, got shape {array.shape}; save one plane per file")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{path}: pixel type {array.dtype} is not a phase map; give float radians")
    try:
        array = array.astype(np.float64)
    except MemoryError:
        raise too_large(path, array.shape, np.float64) from None
    check_finite(array, path)
    unit = meta.description.get("unit")
    if unit not in (None, "rad"):
        raise UserError(f"{path}: the phase map is in {unit!r}; give phase in radians (the file's unit is not radians: "
                        "convert degrees by ×π/180, an optical path difference by φ = 2π·OPD/λ)")
    if np.abs(array).max() > MAX_PLAUSIBLE_PHASE_RAD:
        raise UserError(f"{path}: |phase| reaches {np.abs(array).max():.4g}, which is not radians of a cell; "
                        "convert degrees (×π/180) or optical path (φ = 2π·OPD/λ) to radians")
    wavelength = meta.description.get("wavelength_um")
    return PhaseMap(phase=array[None] if array.ndim == 2 else array,
                    wavelength_um=float(wavelength) if isinstance(wavelength, (int, float)) else None,
                    pixel_size_um=meta.pixel_size_um, description=dict(meta.description))


def write_phase_map(out: str | os.PathLike, phase: np.ndarray, *, wavelength_um: float | None,
                    pixel_size_um: float | None, method: str) -> Path:
    """Write a ``(Y, X)`` phase map (radians) with its wavelength, pixel size and method, atomically."""
    description: dict = {"quantity": "phase", "unit": "rad", "method": method}
    if wavelength_um:
        description["wavelength_um"] = wavelength_um
    if pixel_size_um:
        description["pixel_size_um"] = pixel_size_um
    return write_tiff(out, phase[None], pixel_size_um=pixel_size_um, channel_names=["phase"], description=description)
