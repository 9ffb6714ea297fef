"""``virtualstain phase …``: raw frames (holograms, QLSI, phase-shifted frames, defocus stacks) → phase TIFFs.

Every output is a float32 OME-TIFF of the phase in radians whose metadata carries the
pixel size (µm) and, in its JSON description, ``quantity``, ``unit``, ``wavelength_um``,
``pixel_size_um`` and ``method``, so that ``virtualstain drymass`` needs no flags.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ...data.io import ImageMeta, check_finite, check_not_constant, read_image, write_tiff
from ...data.phase_maps import write_phase_map
from ...data.units import check_pixel_size_um, check_wavelength_um
from ...errors import UserError
from ...optics import (
    focus_curve,
    four_frame_phase,
    hologram_phase,
    qlsi_phase,
    select_focus_planes,
    tie_phase,
    tie_phase_iterative,
)
from ...optics.focus import Measure


def read_plane(path: str | os.PathLike, what: str) -> tuple[np.ndarray, ImageMeta]:
    """A single 2D image (a leading axis of length 1 is dropped), finite and not constant."""
    array, meta = read_image(path)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise UserError(f"{path}: the {what} must be one 2D image, got shape {array.shape}; "
                        "save one plane per file")
    array = array.astype(np.float64)
    check_finite(array, path)
    check_not_constant(array, path, what)
    return array, meta


def read_stack(path: str | os.PathLike, what: str, planes: Sequence[int]) -> tuple[np.ndarray, ImageMeta]:
    """A ``(N, Y, X)`` stack whose N is one of ``planes``."""
    array, meta = read_image(path)
    array = np.squeeze(array)
    if array.ndim != 3 or array.shape[0] not in planes:
        want = " or ".join(str(n) for n in planes)
        raise UserError(f"{path}: the {what} must be a stack of {want} planes (N, Y, X), got shape {array.shape}")
    array = array.astype(np.float64)
    check_finite(array, path)
    return array, meta


def phase_from_hologram(hologram: str | os.PathLike, out: str | os.PathLike, *, background: str | os.PathLike | None,
                        wavelength_um: float, pixel_size_um: float | None, filter_size: float = 1 / 3,
                        border_px: int = 10) -> np.ndarray:
    """Off-axis hologram (and optional background hologram) → unwrapped phase TIFF; returns the phase."""
    wavelength_um = check_wavelength_um(wavelength_um)
    holo, meta = read_plane(hologram, "hologram")
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um, required=False)
    bg = None
    if background is not None:
        bg, _ = read_plane(background, "background hologram")
        if bg.shape != holo.shape:
            raise UserError(f"{background}: background hologram is {bg.shape} but {hologram} is {holo.shape}; "
                            "record the background with the same camera settings")
    phase = hologram_phase(holo, bg, filter_size=filter_size, border_px=border_px)
    write_phase_map(out, phase, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, method="off-axis hologram")
    return phase


def phase_from_qlsi(interferogram: str | os.PathLike, out: str | os.PathLike, *, reference: str | os.PathLike,
                    wavelength_um: float, pixel_size_um: float | None, pitch_term_um: float) -> np.ndarray:
    """QLSI interferogram + reference → phase TIFF; returns the phase."""
    wavelength_um = check_wavelength_um(wavelength_um)
    data, meta = read_plane(interferogram, "QLSI interferogram")
    ref, _ = read_plane(reference, "QLSI reference")
    if ref.shape != data.shape:
        raise UserError(f"{reference}: reference is {ref.shape} but {interferogram} is {data.shape}")
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um, required=False)
    phase = qlsi_phase(data, ref, wavelength_um=wavelength_um, pitch_term_um=pitch_term_um)
    write_phase_map(out, phase, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, method="QLSI")
    return phase


def phase_from_shifting(frames: str | os.PathLike, out: str | os.PathLike, *, wavelength_um: float | None = None,
                        pixel_size_um: float | None = None, unwrap: bool = True) -> np.ndarray:
    """Four π/2-shifted frames (one ``(4, Y, X)`` stack) → phase TIFF; returns the phase."""
    stack, meta = read_stack(frames, "phase-shifting frames", (4,))
    wavelength_um = check_wavelength_um(wavelength_um, required=False)
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um, required=False)
    phase = four_frame_phase(stack, unwrap=unwrap)
    write_phase_map(out, phase, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, method="four-frame phase shifting")
    return phase


def phase_from_tie(stack_path: str | os.PathLike, out: str | os.PathLike, *, z_um: Sequence[float],
                   wavelength_um: float, pixel_size_um: float | None,
                   solver: Literal["fft", "dct", "iterative"] = "dct",
                   regularization_per_um2: float = 1e-4, medium_index: float = 1.0) -> np.ndarray:
    """Two or three defocused planes → phase TIFF by the TIE (``fft``, ``dct`` or ``iterative``)."""
    if solver not in ("fft", "dct", "iterative"):
        raise UserError(f"--solver {solver!r}: choose fft, dct or iterative")
    stack, meta = read_stack(stack_path, "defocus stack", (2, 3))
    if len(z_um) != stack.shape[0]:
        raise UserError(f"{stack_path}: {stack.shape[0]} planes but --z-um gives {len(z_um)} positions; "
                        "give one z (µm) per plane, in file order")
    if len(set(z_um)) != len(z_um):
        raise UserError(f"--z-um {','.join(map(str, z_um))}: the planes must be at different z")
    if stack.mean() <= 0:
        raise UserError(f"{stack_path}: intensities must be positive for the TIE; subtract the camera offset only")
    wavelength_um = check_wavelength_um(wavelength_um)
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um)
    if solver == "iterative":
        phase = tie_phase_iterative(stack, z_um, solver="dct", wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                                    medium_index=medium_index, regularization_per_um2=regularization_per_um2).phase
    else:
        phase = tie_phase(stack, z_um, solver=solver, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                          medium_index=medium_index, regularization_per_um2=regularization_per_um2)
    write_phase_map(out, phase, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, method=f"TIE ({solver})")
    return phase


def focus_planes(stack_path: str | os.PathLike, n: int, *, measure: Measure = "haar", mode: Literal["max", "min"] = "max",
                 out: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Focus curve of a ``(Z, Y, X)`` stack and the ``n`` best planes (best first); optionally write them."""
    array, meta = read_image(stack_path)
    array = np.squeeze(array)
    if array.ndim != 3:
        raise UserError(f"{stack_path}: focus needs a z-stack (Z, Y, X), got shape {array.shape}")
    check_finite(array.astype(np.float64), stack_path)
    if not 1 <= n <= array.shape[0]:
        raise UserError(f"--n {n}: the stack has {array.shape[0]} planes; choose 1..{array.shape[0]}")
    curve = focus_curve(array, measure)
    picked = select_focus_planes(array, n, measure=measure, mode=mode)
    if out is not None:
        write_tiff(out, array[picked].astype(np.float32), pixel_size_um=meta.pixel_size_um,
                   channel_names=[f"plane {int(i)}" for i in picked],
                   description={"source": str(stack_path), "planes": [int(i) for i in picked], "measure": measure})
    return curve, picked
