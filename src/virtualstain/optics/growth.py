"""Mass over time: curves per field and per object, exponential growth fits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .drymass import as_labels, confluence, object_dry_mass


@dataclass
class GrowthFit:
    """Exponential growth ``m(t) = m0 · exp(k·t)`` fitted to masses over time.

    Attributes
    ----------
    rate_per_h : float
        ``k`` (1/h).
    doubling_time_h : float
        ``ln 2 / k`` (h); infinite for no growth, negative for loss.
    doubling_time_ci_h : (float, float)
        Confidence interval of the doubling time from that of ``k`` (Student t on the
        slope of ``ln m`` against ``t``); ``inf`` when the interval of ``k`` includes 0.
    mass0_pg : float
        ``m0`` (pg), the fitted mass at ``t = 0``.
    r2 : float
        Coefficient of determination of the log-linear fit.
    n : int
        Time points used.
    """

    rate_per_h: float
    doubling_time_h: float
    doubling_time_ci_h: tuple[float, float]
    mass0_pg: float
    r2: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def _doubling(rate: float) -> float:
    return float(np.log(2) / rate) if rate != 0 else float("inf")


def fit_exponential_growth(times_h: np.ndarray, masses_pg: np.ndarray, confidence: float = 0.95) -> GrowthFit:
    """Least-squares fit of ``ln m = ln m0 + k·t`` (relative errors weigh equally at all sizes).

    Raises
    ------
    ValueError
        Fewer than 3 time points, or a non-positive mass (no logarithm).
    """
    t = np.asarray(times_h, dtype=float)
    m = np.asarray(masses_pg, dtype=float)
    if t.shape != m.shape or t.ndim != 1:
        raise ValueError(f"times and masses must be 1-D of equal length, got {t.shape} and {m.shape}")
    if len(t) < 3:
        raise ValueError(f"a growth fit needs at least 3 time points, got {len(t)}")
    if (m <= 0).any() or not np.isfinite(m).all():
        raise ValueError("masses must be positive and finite for an exponential fit")
    fit = stats.linregress(t, np.log(m))
    half = stats.t.ppf(0.5 + confidence / 2, len(t) - 2) * fit.stderr
    lo, hi = fit.slope - half, fit.slope + half
    if lo > 0:
        ci = (_doubling(hi), _doubling(lo))
    elif hi > 0:  # growth not significant: the doubling time has no upper bound
        ci = (_doubling(hi), float("inf"))
    else:
        ci = (float("-inf"), float("inf"))
    return GrowthFit(rate_per_h=float(fit.slope), doubling_time_h=_doubling(fit.slope), doubling_time_ci_h=ci,
                     mass0_pg=float(np.exp(fit.intercept)), r2=float(fit.rvalue ** 2), n=len(t))


def mass_curves(phase_stack: np.ndarray, labels: np.ndarray, times_h: np.ndarray, *, wavelength_um: float,
                pixel_size_um: float, alpha_ml_per_g: float) -> tuple[list[dict], list[dict]]:
    """Dry mass of each object and of the field in every frame of a time-lapse.

    Parameters
    ----------
    phase_stack : numpy.ndarray
        ``(T, Y, X)`` phase maps, radians.
    labels : numpy.ndarray
        ``(T, Y, X)`` labels whose ids follow the same object over time (tracked), or one
        ``(Y, X)`` label image used for every frame (fixed regions).
    times_h : numpy.ndarray
        ``(T,)`` acquisition times, hours.

    Returns
    -------
    object_rows : list of dict
        :func:`~virtualstain.optics.drymass.object_dry_mass` rows plus ``frame`` and ``time_h``.
    field_rows : list of dict
        Per frame: ``frame, time_h, dry_mass_pg`` (all labelled pixels), ``objects``, ``confluence``.
    """
    phase_stack = np.asarray(phase_stack, dtype=float)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = np.broadcast_to(labels, phase_stack.shape)
    if labels.shape != phase_stack.shape:
        raise ValueError(f"labels shape {labels.shape} matches neither the phase stack {phase_stack.shape} nor one frame")
    if len(times_h) != len(phase_stack):
        raise ValueError(f"{len(times_h)} times for {len(phase_stack)} frames")
    object_rows, field_rows = [], []
    for frame, (phase, lab, t) in enumerate(zip(phase_stack, labels, times_h)):
        lab = as_labels(lab)
        rows = object_dry_mass(phase, lab, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                               alpha_ml_per_g=alpha_ml_per_g)
        object_rows += [{"frame": frame, "time_h": float(t), **row} for row in rows]
        field_rows.append({"frame": frame, "time_h": float(t), "dry_mass_pg": sum(r["dry_mass_pg"] for r in rows),
                           "objects": len(rows), "confluence": confluence(lab)})
    return object_rows, field_rows
