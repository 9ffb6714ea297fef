"""Angular-spectrum propagation of scalar complex fields.

Conventions: a field ``(Y, X)`` sampled every ``pixel_size_um`` µm; a plane wave
travelling towards +z is ``exp(+2πi·kz·z)`` with ``kz = sqrt((n/λ)² − fx² − fy²)``
(cycles/µm); a positive phase ``φ`` (optical delay, e.g. a cell) multiplies the field by
``exp(+iφ)``.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import scipy.fft

Padding = Literal["none", "zero", "reflect"]
PADDINGS: tuple[str, ...] = ("none", "zero", "reflect")
WORKERS = os.cpu_count() or 1


def spatial_frequencies(shape: tuple[int, int], pixel_size_um: float) -> tuple[np.ndarray, np.ndarray]:
    """FFT-ordered spatial frequencies (cycles/µm) of a ``(Y, X)`` grid.

    Returns
    -------
    fy, fx : numpy.ndarray
        Broadcastable arrays of shape ``(Y, 1)`` and ``(1, X)``.
    """
    fy = np.fft.fftfreq(shape[0], d=pixel_size_um)[:, None]
    fx = np.fft.fftfreq(shape[1], d=pixel_size_um)[None, :]
    return fy, fx


def axial_frequency(f2: np.ndarray, wavelength_um: float, medium_index: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Axial frequency ``kz = sqrt((n/λ)² − f²)`` (cycles/µm) and the mask of propagating waves.

    Evanescent components (``f² > (n/λ)²``) get ``kz = 0`` and ``False`` in the mask;
    they are masked *before* any exponential is taken, so no ``exp(+large)`` appears
    for negative ``z``.
    """
    k2 = (medium_index / wavelength_um) ** 2
    propagating = f2 <= k2
    kz = np.sqrt(np.where(propagating, k2 - f2, 0.0))
    return kz, propagating


def angular_spectrum_kernel(shape: tuple[int, int], pixel_size_um: float, wavelength_um: float,
                            z_um: float | np.ndarray, medium_index: float = 1.0) -> np.ndarray:
    """Transfer function ``H(f; z) = exp(2πi·kz·z)`` of free-space propagation.

    Parameters
    ----------
    shape : (int, int)
        ``(Y, X)`` of the (padded) field.
    pixel_size_um, wavelength_um : float
        Sampling and vacuum wavelength, µm.
    z_um : float or array
        Propagation distance(s), µm; an array of ``Z`` distances gives ``(Z, Y, X)``.
    medium_index : float
        Refractive index of the medium.

    Returns
    -------
    numpy.ndarray
        complex128, FFT-ordered, zero for evanescent frequencies.
    """
    fy, fx = spatial_frequencies(shape, pixel_size_um)
    kz, propagating = axial_frequency(fy ** 2 + fx ** 2, wavelength_um, medium_index)
    z = np.asarray(z_um, dtype=float)
    phase = 2 * np.pi * z.reshape(z.shape + (1, 1)) * kz
    return np.where(propagating, np.exp(1j * phase), 0.0)


def pad_width(shape: tuple[int, ...], padding: Padding, pad_px: int | None) -> int:
    """Pixels added on each side: 0 for ``"none"``, else ``pad_px`` (default: a quarter of the longer side)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "none":
        return 0
    return int(pad_px) if pad_px is not None else max(shape[-2:]) // 4


def pad_yx(array: np.ndarray, width: int, padding: Padding, fill: complex = 0.0) -> np.ndarray:
    """Pad the last two axes by ``width`` px: mirror (``"reflect"``) or a constant ``fill`` (``"zero"``)."""
    if width == 0:
        return array
    spec = [(0, 0)] * (array.ndim - 2) + [(width, width), (width, width)]
    if padding == "reflect":
        return np.pad(array, spec, mode="symmetric")
    return np.pad(array, spec, mode="constant", constant_values=fill)


def crop_yx(array: np.ndarray, width: int) -> np.ndarray:
    """Undo :func:`pad_yx`."""
    return array if width == 0 else array[..., width:-width, width:-width]


def propagate(field: np.ndarray, z_um: float | np.ndarray, *, wavelength_um: float, pixel_size_um: float,
              medium_index: float = 1.0, padding: Padding = "none", pad_px: int | None = None) -> np.ndarray:
    """Propagate a complex field by the angular-spectrum method.

    Parameters
    ----------
    field : numpy.ndarray
        Complex field ``(Y, X)`` at z = 0.
    z_um : float or sequence of float
        Distance(s) in µm (negative = backwards). A sequence gives ``(Z, Y, X)``.
    wavelength_um : float
        Vacuum wavelength, µm.
    pixel_size_um : float
        Sampling, µm.
    medium_index : float
        Refractive index of the medium (the wavelength in it is ``λ/n``).
    padding : {"none", "zero", "reflect"}
        ``"none"``: periodic boundaries (exactly invertible, energy conserving for a
        band-limited field). ``"zero"``: the field is zero outside (an aperture);
        ``"reflect"``: mirrored, which avoids both wrap-around and aperture edges for
        fields that continue beyond the image. Padded fields are cropped back.
    pad_px : int, optional
        Padding on each side (default: a quarter of the longer side).

    Returns
    -------
    numpy.ndarray
        complex128 field(s) at ``z``: ``(Y, X)`` or ``(Z, Y, X)``.
    """
    field = np.asarray(field, dtype=np.complex128)
    if field.ndim != 2:
        raise ValueError(f"field must be (Y, X), got shape {field.shape}")
    width = pad_width(field.shape, padding, pad_px)
    padded = pad_yx(field, width, padding)
    kernel = angular_spectrum_kernel(padded.shape, pixel_size_um, wavelength_um, z_um, medium_index)
    spectrum = scipy.fft.fft2(padded, workers=WORKERS)
    out = scipy.fft.ifft2(spectrum * kernel, workers=WORKERS)
    return crop_yx(out, width)
