"""Off-axis holography and quadri-wave lateral shearing (QLSI) through qpretrieve, plus background fits."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from skimage.restoration import unwrap_phase


def _qpretrieve():
    with warnings.catch_warnings():  # it warns about optional FFT back-ends (pyfftw, cupy) at import
        warnings.simplefilter("ignore", UserWarning)
        import qpretrieve
    return qpretrieve


def subtract_background(phase_rad: np.ndarray, *, mask: np.ndarray | None = None, border_px: int = 10,
                        profile: Literal["tilt", "offset"] = "tilt") -> np.ndarray:
    """Subtract a plane (``"tilt"``) or a constant (``"offset"``) fitted to background pixels.

    Parameters
    ----------
    phase_rad : numpy.ndarray
        ``(Y, X)`` phase, radians.
    mask : numpy.ndarray of bool, optional
        True where there is only background. Default: a frame ``border_px`` wide.
    border_px : int
        Width of the default background frame, px.
    profile : {"tilt", "offset"}
        Least-squares plane ``a + b·y + c·x`` or the median.

    Returns
    -------
    numpy.ndarray
        Phase with the background at 0.
    """
    phase = np.asarray(phase_rad, dtype=float)
    if mask is None:
        if not 0 < border_px < min(phase.shape) // 2:
            raise ValueError(f"border_px must be in [1, {min(phase.shape) // 2 - 1}] for a {phase.shape} image")
        mask = np.zeros(phase.shape, bool)
        mask[:border_px], mask[-border_px:], mask[:, :border_px], mask[:, -border_px:] = True, True, True, True
    mask = np.asarray(mask, bool)
    if mask.sum() < 3:
        raise ValueError("background mask has fewer than 3 pixels; give a larger mask or border")
    if profile == "offset":
        return phase - np.median(phase[mask])
    if profile != "tilt":
        raise ValueError(f"profile must be 'tilt' or 'offset', got {profile!r}")
    yy, xx = np.indices(phase.shape, dtype=float)
    design = np.stack([np.ones(mask.sum()), yy[mask], xx[mask]], axis=1)
    coef = np.linalg.lstsq(design, phase[mask], rcond=None)[0]
    return phase - (coef[0] + coef[1] * yy + coef[2] * xx)


def hologram_phase(hologram: np.ndarray, background: np.ndarray | None = None, *, filter_name: str = "disk",
                   filter_size: float = 1 / 3, sideband_freq: tuple[float, float] | None = None,
                   border_px: int = 10, profile: Literal["tilt", "offset"] | None = "tilt") -> np.ndarray:
    """Unwrapped, background-corrected phase (radians) of an off-axis hologram.

    qpretrieve finds the sideband, filters it (``filter_name``, ``filter_size`` as a
    fraction of the sideband distance) and returns the complex field. The field of a
    background hologram (same set-up, no sample), processed with the same sideband
    and filter, divides it out, which removes the carrier's residual tilt and
    stationary aberrations. The phase is then unwrapped (scikit-image) and a
    remaining plane is fitted to a ``border_px`` frame and subtracted (``profile=None``
    skips this).

    Parameters
    ----------
    hologram, background : numpy.ndarray
        ``(Y, X)`` real-valued holograms.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` float64 phase.
    """
    qp = _qpretrieve()
    holo = qp.OffAxisHologram(np.asarray(hologram, dtype=float))
    holo.run_pipeline(filter_name=filter_name, filter_size=filter_size, sideband_freq=sideband_freq)
    field = np.squeeze(holo.field)
    if background is not None:
        if np.shape(background) != np.shape(hologram):
            raise ValueError(f"background hologram shape {np.shape(background)} differs from {np.shape(hologram)}")
        ref = qp.OffAxisHologram(np.asarray(background, dtype=float))
        ref.process_like(holo)
        field = field / np.squeeze(ref.field)
    phase = unwrap_phase(np.angle(field))
    return phase if profile is None else subtract_background(phase, border_px=border_px, profile=profile)


def qlsi_phase(interferogram: np.ndarray, reference: np.ndarray, *, wavelength_um: float, pitch_term_um: float,
               border_px: int = 10, profile: Literal["tilt", "offset"] | None = "tilt") -> np.ndarray:
    """Phase (radians) from a quadri-wave lateral shearing interferogram and its reference.

    qpretrieve demodulates the two gradient images, subtracts the reference's and
    integrates them; ``pitch_term_um`` is the grating-to-sensor term ``L·a/d`` of the
    QLSI camera (in µm; qpretrieve calls it ``qlsi_pitch_term``, in m). A plane fitted
    to a ``border_px`` frame is subtracted.
    """
    qp = _qpretrieve()
    if np.shape(reference) != np.shape(interferogram):
        raise ValueError(f"reference shape {np.shape(reference)} differs from interferogram {np.shape(interferogram)}")
    qlsi = qp.QLSInterferogram(np.asarray(interferogram, dtype=float), reference=np.asarray(reference, dtype=float),
                               wavelength=wavelength_um * 1e-6, qlsi_pitch_term=pitch_term_um * 1e-6)
    qlsi.run_pipeline()
    phase = np.squeeze(np.asarray(qlsi.phase, dtype=float))
    return phase if profile is None else subtract_background(phase, border_px=border_px, profile=profile)
