"""Phase from defocused intensities: the transport-of-intensity equation (TIE).

``∇·(I ∇φ) = −k ∂I/∂z`` with ``k = 2π·n/λ``. Under the weak-absorption approximation
(``I ≈ Ī`` constant) this is the Poisson equation ``∇²φ = −(k/Ī) ∂I/∂z``, solved here
spectrally with Tikhonov regularisation. The iterative refinement re-simulates the
planes from the current phase and solves again for the residual, which removes the
finite-difference and weak-absorption errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.fft

from .propagation import WORKERS, propagate

Solver = Literal["fft", "dct"]
SOLVERS: tuple[str, ...] = ("fft", "dct")
#: Default Tikhonov parameter ε in µm⁻²: it damps spatial periods longer than ~2π/√ε ≈ 630 µm.
DEFAULT_REGULARIZATION_PER_UM2 = 1e-4


def laplacian_eigenvalues(shape: tuple[int, int], pixel_size_um: float, solver: Solver) -> np.ndarray:
    """``q² = |2π f|²`` (µm⁻²) of the basis functions of the Poisson solver.

    ``"fft"``: complex exponentials (periodic boundaries), ``q = 2π·fftfreq``.
    ``"dct"``: DCT-II cosines (Neumann boundaries, the mirror-extended image),
    ``q = π·k/(N·Δx)``.
    """
    if solver == "fft":
        qy = 2 * np.pi * np.fft.fftfreq(shape[0], d=pixel_size_um)
        qx = 2 * np.pi * np.fft.fftfreq(shape[1], d=pixel_size_um)
    elif solver == "dct":
        qy = np.pi * np.arange(shape[0]) / (shape[0] * pixel_size_um)
        qx = np.pi * np.arange(shape[1]) / (shape[1] * pixel_size_um)
    else:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return qy[:, None] ** 2 + qx[None, :] ** 2


def check_regularization(regularization_per_um2: float) -> float:
    """Tikhonov ε must be a finite number ≥ 0 (µm⁻²). ``q⁴ + ε²`` would silently drop the sign of a negative
    ε (a typo or a misread unit), and NaN would make every phase NaN, so both raise ``ValueError``."""
    value = float(regularization_per_um2)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"regularization_per_um2 must be a finite number ≥ 0 (µm⁻², e.g. "
                         f"{DEFAULT_REGULARIZATION_PER_UM2:g}), got {regularization_per_um2}")
    return value


def solve_poisson(rhs: np.ndarray, pixel_size_um: float, solver: Solver = "fft",
                  regularization_per_um2: float = DEFAULT_REGULARIZATION_PER_UM2) -> np.ndarray:
    """Solve ``∇²u = rhs`` (rhs in units/µm²) for ``u`` with zero mean.

    Tikhonov-regularised inverse Laplacian ``û = −q² · r̂ / (q⁴ + ε²)`` where ``ε`` is
    ``regularization_per_um2`` (µm⁻²); ``ε = 0`` is the plain inverse (the mean is
    still set to zero, since it is unobservable).
    """
    check_regularization(regularization_per_um2)
    rhs = np.asarray(rhs, dtype=float)
    q2 = laplacian_eigenvalues(rhs.shape, pixel_size_um, solver)
    denominator = q2 ** 2 + regularization_per_um2 ** 2
    denominator[0, 0] = np.inf
    gain = -q2 / denominator
    if solver == "fft":
        return scipy.fft.ifft2(scipy.fft.fft2(rhs, workers=WORKERS) * gain, workers=WORKERS).real
    return scipy.fft.idctn(scipy.fft.dctn(rhs, type=2, norm="ortho", workers=WORKERS) * gain,
                           type=2, norm="ortho", workers=WORKERS)


def axial_derivative(stack: np.ndarray, z_um: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``∂I/∂z`` and the intensity at the reference plane from two or three planes.

    Two planes: the difference quotient, referred to their midpoint. Three planes
    (any spacing, sorted by z): the second-order finite difference at the middle plane.

    Returns
    -------
    didz : numpy.ndarray
        ``(Y, X)`` derivative, intensity units per µm.
    intensity : numpy.ndarray
        ``(Y, X)`` intensity at the reference plane (the mean of two planes, or the middle one).
    z_ref_um : float
        The plane the phase refers to.
    """
    order = np.argsort(z_um)
    stack, z = stack[order], np.asarray(z_um, dtype=float)[order]
    if len(z) == 2:
        return (stack[1] - stack[0]) / (z[1] - z[0]), 0.5 * (stack[0] + stack[1]), float(z.mean())
    h0, h1 = z[1] - z[0], z[2] - z[1]
    didz = (-h1 / (h0 * (h0 + h1)) * stack[0] + (h1 - h0) / (h0 * h1) * stack[1] + h0 / (h1 * (h0 + h1)) * stack[2])
    return didz, stack[1], float(z[1])


def _check_stack(stack: np.ndarray, z_um) -> tuple[np.ndarray, np.ndarray]:
    stack = np.asarray(stack, dtype=float)
    z = np.asarray(z_um, dtype=float).ravel()
    if stack.ndim != 3 or stack.shape[0] not in (2, 3):
        raise ValueError(f"TIE needs a (2, Y, X) or (3, Y, X) stack of planes, got shape {stack.shape}")
    if len(z) != stack.shape[0]:
        raise ValueError(f"{len(z)} z positions for {stack.shape[0]} planes; give one z (µm) per plane")
    if len(np.unique(z)) != len(z):
        raise ValueError(f"z positions must differ, got {z.tolist()} µm")
    if not np.isfinite(stack).all() or stack.mean() <= 0:
        raise ValueError("TIE needs finite intensities with a positive mean")
    return stack, z


def tie_phase(stack: np.ndarray, z_um, *, wavelength_um: float, pixel_size_um: float, medium_index: float = 1.0,
              solver: Solver = "fft", regularization_per_um2: float = DEFAULT_REGULARIZATION_PER_UM2) -> np.ndarray:
    """Phase (radians) from two or three defocused intensity planes by the TIE.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(2, Y, X)`` or ``(3, Y, X)`` intensities (any units; only ratios matter).
    z_um : sequence of float
        Defocus of each plane, µm.
    wavelength_um, pixel_size_um : float
        Vacuum wavelength and sampling, µm.
    medium_index : float
        Refractive index of the medium.
    solver : {"fft", "dct"}
        Periodic (FFT) or Neumann (DCT) boundaries. Real fields of view are not
        periodic: prefer ``"dct"``, which assumes no intensity flux across the border
        (objects inside the field; the error grows with the phase gradient of
        objects cut by the border, as the FFT solver's does with a non-periodic background).
    regularization_per_um2 : float
        Tikhonov ε (µm⁻²), see :func:`solve_poisson`.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` phase with zero mean, at the midpoint of two planes or the middle of three.
    """
    check_regularization(regularization_per_um2)
    stack, z = _check_stack(stack, z_um)
    didz, intensity, _ = axial_derivative(stack, z)
    k = 2 * np.pi * medium_index / wavelength_um
    return solve_poisson(-k * didz / intensity.mean(), pixel_size_um, solver, regularization_per_um2)


@dataclass
class IterativeTIE:
    """Result of :func:`tie_phase_iterative`.

    Attributes
    ----------
    phase : numpy.ndarray
        ``(Y, X)`` phase, radians.
    residuals : list of float
        Relative RMS misfit ``‖I_measured − I_simulated‖ / ‖I_measured − Ī‖`` before
        each update (the first is that of plain TIE).
    iterations : int
        Updates kept.
    """

    phase: np.ndarray
    residuals: list[float] = field(default_factory=list)
    iterations: int = 0


def _simulate_planes(amplitude: np.ndarray, phase: np.ndarray, dz: np.ndarray, wavelength_um: float,
                     pixel_size_um: float, medium_index: float, solver: Solver) -> np.ndarray:
    field0 = amplitude * np.exp(1j * phase)
    if solver == "dct":  # the same mirror boundary the DCT solver assumes
        ny, nx = phase.shape
        mirrored = np.block([[field0, field0[:, ::-1]], [field0[::-1], field0[::-1, ::-1]]])
        out = propagate(mirrored, dz, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                        medium_index=medium_index)[:, :ny, :nx]
    else:
        out = propagate(field0, dz, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, medium_index=medium_index)
    return np.abs(out) ** 2


def tie_phase_iterative(stack: np.ndarray, z_um, *, wavelength_um: float, pixel_size_um: float,
                        medium_index: float = 1.0, solver: Solver = "dct",
                        regularization_per_um2: float = DEFAULT_REGULARIZATION_PER_UM2,
                        max_iterations: int = 20, tolerance: float = 1e-3) -> IterativeTIE:
    """TIE with iterative refinement (re-simulate the planes, solve the TIE for the residual).

    Each step propagates ``sqrt(Ī)·exp(iφ)`` coherently to the measured planes
    (relative to the reference plane), and adds the TIE solution of the residual
    intensities to ``φ``. It stops after ``max_iterations`` or when the relative misfit
    improves by less than ``tolerance`` (relative), keeping the best phase seen.

    Parameters are those of :func:`tie_phase`; the default solver is the DCT one.
    """
    check_regularization(regularization_per_um2)
    stack, z = _check_stack(stack, z_um)
    _, intensity, z_ref = axial_derivative(stack, z)
    mean_intensity = intensity.mean()
    amplitude = np.sqrt(mean_intensity)
    dz = z - z_ref
    k = 2 * np.pi * medium_index / wavelength_um
    scale = np.linalg.norm(stack - stack.mean(axis=(1, 2), keepdims=True)) or 1.0

    def solve(planes: np.ndarray) -> np.ndarray:
        didz, _, _ = axial_derivative(planes, z)
        return solve_poisson(-k * didz / mean_intensity, pixel_size_um, solver, regularization_per_um2)

    phase = solve(stack)
    result = IterativeTIE(phase=phase)
    for _ in range(max_iterations):
        simulated = _simulate_planes(amplitude, phase, dz, wavelength_um, pixel_size_um, medium_index, solver)
        residual = stack - simulated
        misfit = float(np.linalg.norm(residual - residual.mean(axis=(1, 2), keepdims=True)) / scale)
        if result.residuals and misfit > result.residuals[-1] * (1 - tolerance):
            result.residuals.append(misfit)
            break
        result.residuals.append(misfit)
        result.phase, result.iterations = phase, len(result.residuals) - 1
        phase = phase + solve(residual)
    return result
