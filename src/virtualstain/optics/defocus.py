"""Incoherent (fluorescence) defocus: the scalar pupil, its intensity PSF and FFT blurring.

A fluorescence image at defocus z is the in-focus object convolved with the intensity point-spread
function of a circular pupil with a defocus phase (scalar, aberration-free, paraxial *not* assumed):

``P_z(f) = circ(|f| ≤ NA/λ) · exp(2πi·z·sqrt((n/λ)² − |f|²))``     (f in cycles/µm, λ in vacuum)
``h_z(x) = |IFFT(P_z)(x)|² / Σ|IFFT(P_z)|²``                        (sums to 1)

so that its transfer function, the OTF, is the autocorrelation of the pupil normalised to 1 at f = 0;
in focus it is the classical ``(2/π)(acos ρ − ρ·sqrt(1 − ρ²))`` with ``ρ = |f| / (2·NA/λ)``. The PSF is
sampled at the pixel centres (camera pixels as points), computed on a grid ``m`` times finer so that
the pupil fits inside it (``m = ⌊2·P·NA/λ⌋ + 1``): its discrete Fourier transform is then the OTF
aliased at the sampling frequency 1/P, exactly, also when the pixels undersample the optics.

Images are ``(Y, X)``, lengths in µm. A PSF array is FFT-ordered (origin at ``[0, 0]``) when it comes
from :func:`intensity_psf`; kernels handed to :func:`blur` are centred (origin at ``[ny // 2, nx // 2]``),
as a measured bead image is.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from .propagation import WORKERS, Padding, axial_frequency, crop_yx, pad_width, pad_yx, spatial_frequencies

#: Pixels of mirror padding added to the blur radius (the PSF's rings and tails beyond the geometric disc).
PAD_MARGIN_PX = 8
#: Airy radii (0.61·λ/NA) of padding added to the geometric blur radius.
PAD_AIRY_RADII = 3


def check_optics(na: float, medium_index: float) -> None:
    """Refuse an NA that the medium cannot carry (NA = n·sin θ < n) or that is not positive.

    Raises
    ------
    ValueError
        ``0 < NA < n`` does not hold.
    """
    if not 0 < na < medium_index:
        raise ValueError(f"the objective NA must be in (0, {medium_index}) for a medium of index {medium_index}, got {na}")


def oversampling(pixel_size_um: float, wavelength_um: float, na: float) -> int:
    """Smallest integer ``m`` with ``m / (2·P) > NA/λ``: the pupil then lies strictly inside a grid of pixel P/m."""
    return int(math.floor(2 * pixel_size_um * na / wavelength_um)) + 1


def defocus_pupil(shape: tuple[int, int], *, pixel_size_um: float, wavelength_um: float, na: float, z_um: float,
                  medium_index: float = 1.0) -> np.ndarray:
    """The pupil ``circ(|f| ≤ NA/λ) · exp(2πi·z·kz)`` on the FFT grid of ``shape`` and ``pixel_size_um``.

    Parameters
    ----------
    shape : (int, int)
        ``(Y, X)`` of the grid.
    pixel_size_um, wavelength_um : float
        Sampling and vacuum (emission) wavelength, µm.
    na : float
        Objective numerical aperture (``0 < NA < n``).
    z_um : float
        Defocus, µm (positive: the object lies beyond the focal plane, away from the objective).
    medium_index : float
        Refractive index n of the immersion/sample medium.

    Returns
    -------
    numpy.ndarray
        complex128 ``(Y, X)``, FFT-ordered; zero outside the pupil.
    """
    check_optics(na, medium_index)
    fy, fx = spatial_frequencies(shape, pixel_size_um)
    f2 = fy ** 2 + fx ** 2
    kz, _ = axial_frequency(f2, wavelength_um, medium_index)
    inside = f2 <= (na / wavelength_um) ** 2  # NA < n, so every pupil frequency propagates
    return np.where(inside, np.exp(2j * np.pi * z_um * kz), 0.0)


@functools.lru_cache(maxsize=4)  # a few grids: images of one shape at one z share it
def _cached_psf(shape: tuple[int, int], pixel_size_um: float, wavelength_um: float, na: float, z_um: float,
                medium_index: float) -> np.ndarray:
    m = oversampling(pixel_size_um, wavelength_um, na)
    fine = (shape[0] * m, shape[1] * m)
    pupil = defocus_pupil(fine, pixel_size_um=pixel_size_um / m, wavelength_um=wavelength_um, na=na, z_um=z_um,
                          medium_index=medium_index)
    amplitude = scipy.fft.ifft2(pupil, workers=WORKERS)
    psf = (amplitude.real ** 2 + amplitude.imag ** 2)[::m, ::m]  # every m-th fine sample: the pixel centres
    psf /= psf.sum()
    psf.setflags(write=False)
    return psf


def intensity_psf(shape: tuple[int, int], *, pixel_size_um: float, wavelength_um: float, na: float, z_um: float,
                  medium_index: float = 1.0) -> np.ndarray:
    """Incoherent intensity PSF ``|IFFT(P_z)|²`` at defocus ``z_um``, normalised to sum 1.

    Parameters are those of :func:`defocus_pupil`. The PSF is periodic over the grid (it wraps around);
    give a grid larger than the blur (:func:`blur_pad_px`).

    Returns
    -------
    numpy.ndarray
        float64 ``(Y, X)``, FFT-ordered (origin at ``[0, 0]``; ``numpy.fft.fftshift`` centres it), read-only.
        Its DFT is the OTF (pupil autocorrelation, 1 at f = 0), aliased at 1/``pixel_size_um``. The last
        few PSFs are cached, so blurring many images of one size at one z computes it once.
    """
    return _cached_psf(tuple(int(n) for n in shape), float(pixel_size_um), float(wavelength_um), float(na),
                       float(z_um), float(medium_index))


def blur_radius_um(z_um: float, na: float, medium_index: float = 1.0) -> float:
    """Geometric radius of the defocus blur disc, ``|z|·tan θ`` with ``sin θ = NA/n``, µm."""
    return abs(z_um) * na / math.sqrt(medium_index ** 2 - na ** 2)


def blur_pad_px(z_um: float, *, pixel_size_um: float, wavelength_um: float, na: float, medium_index: float = 1.0) -> int:
    """Mirror padding for blurring at ``z_um``: the blur disc, :data:`PAD_AIRY_RADII` Airy radii and
    :data:`PAD_MARGIN_PX` pixels, so that border pixels see mirrored image, not dark or wrapped-around pixels."""
    reach_um = blur_radius_um(z_um, na, medium_index) + PAD_AIRY_RADII * 0.61 * wavelength_um / na
    return int(math.ceil(reach_um / pixel_size_um)) + PAD_MARGIN_PX


def embed_kernel(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A centred kernel (origin at ``[ny // 2, nx // 2]``) on an FFT-ordered grid of ``shape`` (zeros around).

    Raises
    ------
    ValueError
        The kernel is larger than ``shape``.
    """
    ky, kx = kernel.shape
    if ky > shape[0] or kx > shape[1]:
        raise ValueError(f"a {ky}×{kx} kernel does not fit a {shape[0]}×{shape[1]} grid")
    grid = np.zeros(shape, dtype=float)
    grid[:ky, :kx] = kernel
    return np.roll(grid, (-(ky // 2), -(kx // 2)), axis=(0, 1))


def blur(image: np.ndarray, kernel: np.ndarray, *, padding: Padding = "reflect", pad_px: int | None = None) -> np.ndarray:
    """Convolve ``image`` with a centred ``kernel`` by FFT (the kernel is used as given: normalise it first).

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X)``.
    kernel : numpy.ndarray
        ``(ky, kx)`` centred kernel, at most the padded image's size.
    padding : {"reflect", "zero", "none"}
        ``"reflect"``: the image is mirrored beyond its edges (borders keep their brightness);
        ``"zero"``: dark beyond the edges; ``"none"``: periodic (exactly conserves Σ image · Σ kernel).
    pad_px : int, optional
        Padding on each side; default half the kernel's larger side.

    Returns
    -------
    numpy.ndarray
        float64 ``(Y, X)``.
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be (Y, X), got shape {image.shape}")
    width = pad_width(image.shape, padding, max(kernel.shape) // 2 + 1 if pad_px is None else pad_px)
    padded = pad_yx(image, width, padding)
    otf = scipy.fft.rfft2(embed_kernel(np.asarray(kernel, dtype=float), padded.shape), workers=WORKERS)
    out = scipy.fft.irfft2(scipy.fft.rfft2(padded, workers=WORKERS) * otf, s=padded.shape, workers=WORKERS)
    return crop_yx(out, width)


def defocus_image(image: np.ndarray, z_um: float, *, pixel_size_um: float, wavelength_um: float, na: float,
                  medium_index: float = 1.0, padding: Padding = "reflect", pad_px: int | None = None) -> np.ndarray:
    """The fluorescence image ``image`` (taken as the in-focus object) seen at defocus ``z_um``.

    ``image ⊛ h_z`` with :func:`intensity_psf` on the padded grid; the image's own in-focus blur is not
    undone (right when the in-focus PSF is small beside the defocus blur). Total intensity is kept
    (exactly with ``padding="none"``).

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X)`` in-focus fluorescence image.
    z_um, pixel_size_um, wavelength_um, na, medium_index
        As in :func:`defocus_pupil`.
    padding, pad_px
        As in :func:`blur`; default padding :func:`blur_pad_px`.

    Returns
    -------
    numpy.ndarray
        float64 ``(Y, X)``.
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be (Y, X), got shape {image.shape}")
    if pad_px is None:
        pad_px = blur_pad_px(z_um, pixel_size_um=pixel_size_um, wavelength_um=wavelength_um, na=na,
                             medium_index=medium_index)
    width = pad_width(image.shape, padding, pad_px)
    shape = (image.shape[0] + 2 * width, image.shape[1] + 2 * width)
    psf = intensity_psf(shape, pixel_size_um=pixel_size_um, wavelength_um=wavelength_um, na=na, z_um=z_um,
                        medium_index=medium_index)
    return blur(image, np.fft.fftshift(psf), padding=padding, pad_px=width)


def normalize_psf(psf: np.ndarray) -> np.ndarray:
    """A measured PSF as a blur kernel: negative (background-subtracted noise) pixels set to 0, then sum 1.

    Raises
    ------
    ValueError
        Nothing positive is left.
    """
    kernel = np.clip(np.asarray(psf, dtype=float), 0.0, None)
    total = kernel.sum()
    if not total > 0:
        raise ValueError("the PSF has no positive pixels")
    return kernel / total
