"""Bright-field image formation under partially coherent Köhler illumination (Abbe's method).

Every point ``s`` of the condenser aperture is a mutually incoherent plane wave. Its
coherent image is ``|F⁻¹[T(f) · P(f + s) · H_z(f + s)]|²`` (``T`` the object spectrum,
``P`` the objective pupil, ``H_z`` the defocus transfer function); the bright-field
image is their average. Source points fill a disc of radius ``S·NA_obj/λ`` with
``S = NA_cond/NA_obj`` the coherence parameter, so ``S = 0`` is coherent.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .propagation import WORKERS, Padding, axial_frequency, crop_yx, pad_width, pad_yx, spatial_frequencies

#: Bytes of complex work array per chunk of source points and planes.
CHUNK_BYTES = 256 * 2 ** 20


def source_points(coherence: float, na_obj: float, wavelength_um: float, samples: int = 4) -> np.ndarray:
    """Spatial frequencies (cycles/µm) of the condenser source points, shape ``(N, 2)`` as (fy, fx).

    A square grid of step ``S·NA_obj/(λ·samples)`` clipped to the disc of radius
    ``S·NA_obj/λ``; ``coherence = 0`` is one on-axis point. ``samples = 4`` gives 49
    points; increase it for accuracy at large ``S`` (the image converges as ``1/samples²``).
    """
    if not 0.0 <= coherence <= 1.0:
        raise ValueError(f"coherence S = NA_cond/NA_obj must be in [0, 1] for bright field, got {coherence}")
    if coherence == 0.0:
        return np.zeros((1, 2))
    radius = coherence * na_obj / wavelength_um
    step = radius / samples
    grid = np.arange(-samples, samples + 1) * step
    fy, fx = np.meshgrid(grid, grid, indexing="ij")
    inside = fy ** 2 + fx ** 2 <= radius ** 2 * (1 + 1e-12)
    return np.stack([fy[inside], fx[inside]], axis=1)


def brightfield_intensity(
    phase_rad: np.ndarray,
    *,
    z_um: float | np.ndarray,
    wavelength_um: float,
    pixel_size_um: float,
    na_obj: float,
    coherence: float = 0.0,
    absorption: np.ndarray | None = None,
    medium_index: float = 1.0,
    source_samples: int = 4,
    padding: Padding = "none",
    pad_px: int | None = None,
) -> np.ndarray:
    """Bright-field intensity of a thin object at defocus ``z`` (Abbe source-point summation).

    Parameters
    ----------
    phase_rad : numpy.ndarray
        Phase delay ``φ`` of the object, ``(Y, X)``, radians.
    z_um : float or sequence of float
        Defocus(es) in µm; a sequence gives ``(Z, Y, X)``.
    wavelength_um, pixel_size_um : float
        Vacuum wavelength and sampling, µm.
    na_obj : float
        Objective numerical aperture (pupil radius ``NA_obj/λ``).
    coherence : float
        ``S = NA_cond/NA_obj`` in [0, 1]; 0 is coherent illumination.
    absorption : numpy.ndarray, optional
        Amplitude attenuation ``μ`` (``(Y, X)``), transmission ``t = exp(−μ + iφ)``.
    medium_index : float
        Refractive index of the medium.
    source_samples : int
        Source points per disc radius (see :func:`source_points`).
    padding : {"none", "zero", "reflect"}
        Boundary: periodic, empty glass around the image (phase 0), or mirrored.
    pad_px : int, optional
        Padding on each side (default a quarter of the longer side).

    Returns
    -------
    numpy.ndarray
        float64 intensity, ``(Y, X)`` or ``(Z, Y, X)``, normalised so that an empty
        field (``φ = 0``, no absorption) is exactly 1 everywhere.
    """
    phase = np.asarray(phase_rad, dtype=float)
    if phase.ndim != 2:
        raise ValueError(f"phase must be (Y, X), got shape {phase.shape}")
    if not 0 < na_obj <= medium_index:
        raise ValueError(f"na_obj must be in (0, medium_index={medium_index}], got {na_obj}")
    mu = np.zeros_like(phase) if absorption is None else np.asarray(absorption, dtype=float)
    if mu.shape != phase.shape:
        raise ValueError(f"absorption shape {mu.shape} differs from phase shape {phase.shape}")
    width = pad_width(phase.shape, padding, pad_px)
    transmission = pad_yx(np.exp(-mu + 1j * phase), width, padding, fill=1.0)
    spectrum = scipy.fft.fft2(transmission, workers=WORKERS)

    z = np.atleast_1d(np.asarray(z_um, dtype=float))
    sources = source_points(coherence, na_obj, wavelength_um, source_samples)
    fy, fx = spatial_frequencies(transmission.shape, pixel_size_um)
    pupil_radius2 = (na_obj / wavelength_um) ** 2
    plane_bytes = 16 * transmission.size * len(z)
    chunk = max(1, int(CHUNK_BYTES // plane_bytes))

    total = np.zeros((len(z),) + transmission.shape)
    for start in range(0, len(sources), chunk):
        s = sources[start:start + chunk]
        f2 = (fy[None] + s[:, 0, None, None]) ** 2 + (fx[None] + s[:, 1, None, None]) ** 2  # (N, Y, X)
        kz, _ = axial_frequency(f2, wavelength_um, medium_index)
        pupil = f2 <= pupil_radius2
        defocus = np.exp(2j * np.pi * z[None, :, None, None] * kz[:, None])  # (N, Z, Y, X)
        fields = scipy.fft.ifft2(spectrum * np.where(pupil[:, None], defocus, 0.0), workers=WORKERS)
        total += (fields.real ** 2 + fields.imag ** 2).sum(axis=0)
    intensity = crop_yx(total / len(sources), width)
    return intensity if np.ndim(z_um) else intensity[0]
