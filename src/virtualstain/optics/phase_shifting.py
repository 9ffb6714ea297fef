"""Phase-shifting interferometry (four frames) and the SLIM phase relation."""

from __future__ import annotations

import numpy as np
from skimage.restoration import unwrap_phase


def four_frame_phase(frames: np.ndarray, *, unwrap: bool = False) -> np.ndarray:
    """Phase from four frames with reference shifts 0, π/2, π, 3π/2.

    With ``I_k = A + B·cos(φ − k·π/2)`` the phase is
    ``φ = atan2(I_1 − I_3, I_0 − I_2)``, independent of ``A`` and ``B``.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(4, Y, X)`` intensities in shift order.
    unwrap : bool
        Unwrap the result (scikit-image's 2D unwrapper); otherwise it is in (−π, π].

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` phase, radians.
    """
    frames = np.asarray(frames, dtype=float)
    if frames.ndim != 3 or frames.shape[0] != 4:
        raise ValueError(f"phase shifting needs four frames as a (4, Y, X) stack, got shape {frames.shape}")
    phase = np.arctan2(frames[1] - frames[3], frames[0] - frames[2])
    return unwrap_phase(phase) if unwrap else phase


def four_frame_modulation(frames: np.ndarray) -> np.ndarray:
    """Fringe modulation ``B = ½·sqrt((I_1 − I_3)² + (I_0 − I_2)²)`` of four π/2-shifted frames."""
    frames = np.asarray(frames, dtype=float)
    return 0.5 * np.hypot(frames[1] - frames[3], frames[0] - frames[2])


def slim_phase(delta_phi_rad: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    """Object phase from SLIM's measured phase difference ``Δφ`` and amplitude ratio ``β``.

    SLIM interferes the scattered field ``E1`` with the unscattered ``E0`` and measures
    their phase difference ``Δφ`` and ``β = |E1|/|E0|``; the total field is
    ``E0·(1 + β·e^{iΔφ})``, so ``φ = arg(β·sinΔφ / (1 + β·cosΔφ))``, computed as
    ``atan2(β·sinΔφ, 1 + β·cosΔφ)``.
    """
    delta_phi = np.asarray(delta_phi_rad, dtype=float)
    beta = np.asarray(beta, dtype=float)
    return np.arctan2(beta * np.sin(delta_phi), 1.0 + beta * np.cos(delta_phi))
