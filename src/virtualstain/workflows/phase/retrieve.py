"""``virtualstain phase …``: raw frames (holograms, QLSI, phase-shifted frames, defocus stacks) → phase TIFFs.

Every output is a float32 OME-TIFF of the phase in radians whose metadata carries the
pixel size (µm) and, in its JSON description, ``quantity``, ``unit``, ``wavelength_um``,
``pixel_size_um`` and ``method``, so that ``virtualstain drymass`` needs no flags. Before any work,
``--out`` must end in ``.tif``/``.tiff`` and must not be one of the inputs (also through links).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..._atomic import check_output_suffix, refuse_overwriting_inputs
from ...data.io import TIFF_SUFFIXES, ImageMeta, check_finite, check_not_constant, read_image, write_tiff
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

#: Planes of a TIE stack closer than this fraction of the smallest possible depth of field λ/n are refused.
#: The depth of field n·λ/NA² is at least λ/n (NA ≤ n), and the intensity change between two planes grows
#: like Δz/DOF; below 10⁻³ of it, it drowns in the ≈10⁻³ relative shot and quantisation noise of a
#: well-exposed camera pixel, and dividing by Δz turns that noise into huge, meaningless phases.
MIN_TIE_SPACING_OF_DOF = 1e-3
#: Width of the frame on which the QLSI background plane is fitted, px.
QLSI_BORDER_PX = 10


def check_phase_out(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """``--out`` is a TIFF path that is none of ``inputs`` (raises :class:`UserError` before any work)."""
    check_output_suffix(out, TIFF_SUFFIXES, "a float32 OME-TIFF")
    refuse_overwriting_inputs([out], inputs, "choose another --out file")


def min_fringe_side_px(border_px: int) -> int:
    """Smallest side of a hologram / QLSI interferogram whose background can be fitted on a ``border_px``
    frame: the frame must leave at least 2 px inside (found by trying: 21 px fails, 22 px works for 10 px)."""
    return 2 * border_px + 2


def _check_fringe_size(array: np.ndarray, path: str | os.PathLike, what: str, border_px: int) -> None:
    side = min_fringe_side_px(border_px)
    if min(array.shape) < side:
        raise UserError(f"{path}: the {what} is {array.shape[0]}×{array.shape[1]} px; phase retrieval needs at least "
                        f"{side}×{side} px (the background is fitted on a {border_px} px frame around the field); "
                        "give the full camera frame")


def _write(out: str | os.PathLike, phase: np.ndarray, source: str | os.PathLike, *, wavelength_um: float | None,
           pixel_size_um: float | None, method: str, hint: str) -> np.ndarray:
    if not np.all(np.isfinite(phase)):
        bad = int(phase.size - np.count_nonzero(np.isfinite(phase)))
        raise UserError(f"{source}: the retrieved phase has {bad} NaN or infinite pixel(s), nothing written; {hint}")
    write_phase_map(out, phase, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, method=method)
    return phase


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
    check_phase_out(out, hologram, background)
    wavelength_um = check_wavelength_um(wavelength_um)
    if not 0 < filter_size < 1:  # qpretrieve's range; NaN fails too
        raise UserError(f"--filter-size {filter_size}: give the sideband filter radius as a fraction of the sideband "
                        "distance, strictly between 0 and 1, e.g. 0.33")
    holo, meta = read_plane(hologram, "hologram")
    _check_fringe_size(holo, hologram, "hologram", border_px)
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um, required=False)
    bg = None
    if background is not None:
        bg, _ = read_plane(background, "background hologram")
        if bg.shape != holo.shape:
            raise UserError(f"{background}: background hologram is {bg.shape} but {hologram} is {holo.shape}; "
                            "record the background with the same camera settings")
    phase = hologram_phase(holo, bg, filter_size=filter_size, border_px=border_px)
    return _write(out, phase, hologram, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                  method="off-axis hologram", hint="check that the file is an off-axis hologram with visible fringes")


def phase_from_qlsi(interferogram: str | os.PathLike, out: str | os.PathLike, *, reference: str | os.PathLike,
                    wavelength_um: float, pixel_size_um: float | None, pitch_term_um: float) -> np.ndarray:
    """QLSI interferogram + reference → phase TIFF; returns the phase."""
    check_phase_out(out, interferogram, reference)
    wavelength_um = check_wavelength_um(wavelength_um)
    if not (math.isfinite(pitch_term_um) and pitch_term_um > 0):
        raise UserError(f"--pitch-term-um {pitch_term_um}: give the QLSI camera's positive grating term L·a/d in µm")
    data, meta = read_plane(interferogram, "QLSI interferogram")
    _check_fringe_size(data, interferogram, "QLSI interferogram", QLSI_BORDER_PX)
    ref, _ = read_plane(reference, "QLSI reference")
    if ref.shape != data.shape:
        raise UserError(f"{reference}: reference is {ref.shape} but {interferogram} is {data.shape}")
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um, required=False)
    phase = qlsi_phase(data, ref, wavelength_um=wavelength_um, pitch_term_um=pitch_term_um, border_px=QLSI_BORDER_PX)
    return _write(out, phase, interferogram, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, method="QLSI",
                  hint="check that the files are a QLSI interferogram and its reference")


def phase_from_shifting(frames: str | os.PathLike, out: str | os.PathLike, *, wavelength_um: float | None = None,
                        pixel_size_um: float | None = None, unwrap: bool = True) -> np.ndarray:
    """Four π/2-shifted frames (one ``(4, Y, X)`` stack) → phase TIFF; returns the phase."""
    check_phase_out(out, frames)
    stack, meta = read_stack(frames, "phase-shifting frames", (4,))
    wavelength_um = check_wavelength_um(wavelength_um, required=False)
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um, required=False)
    phase = four_frame_phase(stack, unwrap=unwrap)
    return _write(out, phase, frames, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                  method="four-frame phase shifting", hint="check the frames' order and exposure")


def phase_from_tie(stack_path: str | os.PathLike, out: str | os.PathLike, *, z_um: Sequence[float],
                   wavelength_um: float, pixel_size_um: float | None,
                   solver: Literal["fft", "dct", "iterative"] = "dct",
                   regularization_per_um2: float = 1e-4, medium_index: float = 1.0) -> np.ndarray:
    """Two or three defocused planes → phase TIFF by the TIE (``fft``, ``dct`` or ``iterative``)."""
    check_phase_out(out, stack_path)
    if solver not in ("fft", "dct", "iterative"):
        raise UserError(f"--solver {solver!r}: choose fft, dct or iterative")
    z_text = ",".join(f"{z:g}" for z in z_um)
    if not all(math.isfinite(z) for z in z_um):
        raise UserError(f"--z-um {z_text}: every defocus must be a finite number of µm, e.g. -2,2")
    if not (math.isfinite(medium_index) and 1.0 <= medium_index <= 2.0):
        raise UserError(f"--medium-index {medium_index}: give the medium's refractive index, 1–2 (air 1, water 1.33)")
    if not (math.isfinite(regularization_per_um2) and regularization_per_um2 >= 0):
        raise UserError(f"--regularization {regularization_per_um2}: the Tikhonov ε must be a number ≥ 0 (µm⁻²)")
    stack, meta = read_stack(stack_path, "defocus stack", (2, 3))
    if len(z_um) != stack.shape[0]:
        raise UserError(f"{stack_path}: {stack.shape[0]} planes but --z-um gives {len(z_um)} positions; "
                        "give one z (µm) per plane, in file order")
    if len(set(z_um)) != len(z_um):
        raise UserError(f"--z-um {z_text}: the planes must be at different z")
    if stack.mean() <= 0:
        raise UserError(f"{stack_path}: intensities must be positive for the TIE; subtract the camera offset only")
    wavelength_um = check_wavelength_um(wavelength_um)
    pixel_size_um = check_pixel_size_um(pixel_size_um or meta.pixel_size_um)
    min_dz = MIN_TIE_SPACING_OF_DOF * wavelength_um / medium_index
    gap = min(abs(a - b) for i, a in enumerate(z_um) for b in z_um[i + 1:])
    if gap < min_dz:
        raise UserError(f"--z-um {z_text}: two planes are only {gap:.3g} µm apart; the TIE needs at least {min_dz:.3g} µm "
                        f"(10⁻³ of the smallest depth of field λ/n = {wavelength_um / medium_index:.3g} µm), else "
                        "camera noise divided by Δz swamps the phase; give the stage positions in µm")
    if solver == "iterative":
        phase = tie_phase_iterative(stack, z_um, solver="dct", wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                                    medium_index=medium_index, regularization_per_um2=regularization_per_um2).phase
    else:
        phase = tie_phase(stack, z_um, solver=solver, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                          medium_index=medium_index, regularization_per_um2=regularization_per_um2)
    return _write(out, phase, stack_path, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                  method=f"TIE ({solver})", hint="check --z-um and that the planes are bright-field intensities")


def focus_planes(stack_path: str | os.PathLike, n: int, *, measure: Measure = "haar", mode: Literal["max", "min"] = "max",
                 out: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Focus curve of a ``(Z, Y, X)`` stack and the ``n`` best planes (best first); optionally write them."""
    if out is not None:
        check_phase_out(out, stack_path)
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
