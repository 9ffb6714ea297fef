"""Camera effects: pixel binning, noise, and field-brightness correction."""

from __future__ import annotations

import numpy as np


def bin_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks of the last two axes (a camera with ``factor``× larger pixels).

    The mean (not the sum) keeps intensity units; the integral ``Σ value · pixel area``
    is conserved, so a phase map's dry mass is unchanged by binning.

    Raises
    ------
    ValueError
        If Y or X is not a multiple of ``factor``; crop the image first.
    """
    image = np.asarray(image)
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"binning factor must be a positive integer, got {factor}")
    *lead, ny, nx = image.shape
    if ny % factor or nx % factor:
        raise ValueError(f"image of {ny}×{nx} px cannot be binned {factor}×: crop it to a multiple of {factor} first")
    blocks = image.reshape(*lead, ny // factor, factor, nx // factor, factor)
    return blocks.mean(axis=(-3, -1))


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (image units; DL-SRQPI uses 0.01)."""
    rng = np.random.default_rng(rng)
    return np.asarray(image, dtype=float) + rng.normal(0.0, sigma, size=np.shape(image))


def add_poisson_noise(image: np.ndarray, photons_per_unit: float,
                      rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Shot noise: ``Poisson(image · photons_per_unit) / photons_per_unit`` (so the mean is unchanged).

    ``photons_per_unit`` is the photon count of an intensity of 1 (e.g. the empty field).
    """
    image = np.asarray(image, dtype=float)
    if (image < 0).any():
        raise ValueError("Poisson noise needs a non-negative intensity image")
    rng = np.random.default_rng(rng)
    return rng.poisson(image * photons_per_unit) / photons_per_unit


def correct_brightness(images: np.ndarray, reference_mean: float | None = None) -> np.ndarray:
    """Field-brightness correction of DL-SRQPI: ``C = R · S̄ / R̄`` for each image ``R``.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, Y, X)`` images (or one ``(Y, X)`` image with ``reference_mean``).
    reference_mean : float, optional
        ``S̄``; default the mean grey level of all ``images``.

    Returns
    -------
    numpy.ndarray
        float64 images whose means all equal ``S̄``.
    """
    images = np.asarray(images, dtype=float)
    means = images.mean(axis=(-2, -1), keepdims=True)
    if (means <= 0).any():
        raise ValueError("brightness correction needs images with a positive mean grey level")
    target = images.mean() if reference_mean is None else float(reference_mean)
    return images * (target / means)
