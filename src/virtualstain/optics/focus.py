"""Focus measures and the choice of in-focus planes of a z-stack."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pywt

Measure = Literal["haar", "normalized_variance"]
MEASURES: tuple[str, ...] = ("haar", "normalized_variance")


def haar_detail_energy(image: np.ndarray, levels: int = 1) -> float:
    """Haar-wavelet focus measure (the criterion PICS uses to pick in-focus planes).

    Energy of the detail coefficients (horizontal, vertical, diagonal) of a
    ``levels``-level Haar decomposition divided by the energy of the approximation,
    so it does not depend on brightness: ``Σ‖D‖² / ‖A‖²``. Fine structure raises it.
    """
    coeffs = pywt.wavedec2(np.asarray(image, dtype=float), "haar", level=levels)
    detail = sum(float(np.sum(band ** 2)) for level in coeffs[1:] for band in level)
    approx = float(np.sum(coeffs[0] ** 2))
    return detail / approx if approx > 0 else 0.0


def normalized_variance(image: np.ndarray) -> float:
    """Groen's normalised variance ``var(I)/mean(I)``: overall contrast, brightness-independent."""
    image = np.asarray(image, dtype=float)
    mean = image.mean()
    return float(image.var() / mean) if mean != 0 else 0.0


def focus_curve(stack: np.ndarray, measure: Measure = "haar") -> np.ndarray:
    """The focus measure of every plane of a ``(Z, Y, X)`` stack, shape ``(Z,)``."""
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"focus needs a (Z, Y, X) stack, got shape {stack.shape}")
    if measure == "haar":
        return np.array([haar_detail_energy(plane) for plane in stack])
    if measure == "normalized_variance":
        return np.array([normalized_variance(plane) for plane in stack])
    raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


def select_focus_planes(stack: np.ndarray, n: int = 1, *, measure: Measure = "haar",
                        mode: Literal["max", "min"] = "max") -> np.ndarray:
    """Indices of the ``n`` most in-focus planes, best first.

    ``mode`` must be chosen for the contrast: fluorescence, phase maps and the fine
    detail of bright-field images peak at focus (``"max"``); the overall contrast of a
    bright-field image of a thin phase object is *lowest* at focus (``"min"``, e.g.
    with ``measure="normalized_variance"``). PICS picks the 3 planes with the highest
    Haar measure.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    curve = focus_curve(stack, measure)
    if not 1 <= n <= len(curve):
        raise ValueError(f"n must be between 1 and the {len(curve)} planes, got {n}")
    order = np.argsort(-curve if mode == "max" else curve, kind="stable")
    return order[:n]
