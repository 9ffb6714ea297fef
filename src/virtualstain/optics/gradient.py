"""Integration of a phase-gradient (DIC/GLIM) image along its shear direction."""

from __future__ import annotations

import numpy as np
import scipy.fft

from .propagation import WORKERS


def integrate_gradient(difference_rad: np.ndarray, *, shear_um: float, pixel_size_um: float, axis: int = -1,
                       finite_shear: bool = True, regularization: float = 0.0) -> np.ndarray:
    """Phase from a GLIM phase-difference image by Fourier integration along the shear.

    GLIM measures ``g(x) = φ(x + s/2) − φ(x − s/2)`` for a shear ``s`` along ``axis``.
    Each line is extended antisymmetrically (``g`` then ``−g`` reversed), which makes
    the implied phase the mirror (even) extension of ``φ``: continuous at the borders,
    so a non-periodic phase integrates without wrap-around ramps. In Fourier space
    ``G(f) = D(f)·Φ(f)`` with ``D = 2i·sin(π f s)`` (finite-shear correction) or its
    small-shear limit ``D = 2πi f s``; the inverse is Tikhonov-regularised,
    ``Φ = conj(D)·G / (|D|² + ε)``.

    Parameters
    ----------
    difference_rad : numpy.ndarray
        ``(Y, X)`` phase difference across the shear, radians (``s·∂φ/∂x`` for small shears).
    shear_um : float
        Shear distance ``s``, µm.
    pixel_size_um : float
        Sampling, µm.
    axis : int
        Image axis along which the shear acts (-1: X, -2: Y).
    finite_shear : bool
        Use ``2i·sin(π f s)`` (exact for any shear) instead of ``2πi f s``.
    regularization : float
        ε (dimensionless; ``|D|² ≤ 4``). 0 (default) inverts exactly and drops only the
        frequencies where ``D = 0`` (the mean, and multiples of ``1/s`` when the shear
        exceeds two pixels); a positive ε trades low-frequency accuracy for noise
        suppression near those zeros.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` phase, radians, with zero mean along each line: a constant per line
        (a function of the other axis) is unobservable from a one-directional shear.
    """
    g = np.moveaxis(np.asarray(difference_rad, dtype=float), axis, -1)
    n = g.shape[-1]
    extended = np.concatenate([g, -g[..., ::-1]], axis=-1)
    f = np.fft.fftfreq(2 * n, d=pixel_size_um)
    d = 2j * np.sin(np.pi * f * shear_um) if finite_shear else 2j * np.pi * f * shear_um
    power = np.abs(d) ** 2
    gain = np.where(power > 1e-12, np.conj(d) / np.maximum(power + regularization, 1e-300), 0.0)
    phase = scipy.fft.ifft(scipy.fft.fft(extended, axis=-1, workers=WORKERS) * gain, axis=-1, workers=WORKERS).real
    return np.moveaxis(phase[..., :n], -1, axis)
