"""Similarity registration (shift, rotation, scale) of two images of the same content, e.g. fnet's
registration by prediction: a predicted stain against the real fluorescence.

1. Rotation and scale from the Fourier magnitudes (shift-invariant) resampled on a log-polar grid, where
   they become shifts, found by phase correlation (Reddy & Chatterji 1996).
2. The translation by phase correlation after undoing them (sub-pixel, ``upsample_factor`` 20).
3. Refinement of all four by maximising the Pearson correlation over the overlap (Powell), starting there.

The transform maps *reference* coordinates to *moving* coordinates: the moving image's pixel at
``c + s·R(θ)·(p − c) + t`` shows what the reference shows at ``p`` (``c`` the image centre, ``t`` = (dy, dx)
px, θ counter-clockwise in degrees in the (x, y) image plane, ``s`` the scale). :func:`align` resamples the
moving image onto the reference grid with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage, optimize


@dataclass(frozen=True)
class Similarity:
    """A similarity transform (see the module): shift in px, rotation in degrees, scale (moving / reference)."""

    dy: float = 0.0
    dx: float = 0.0
    angle_deg: float = 0.0
    scale: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    def matrix(self) -> np.ndarray:
        """The 2×2 matrix acting on (y, x) offsets from the centre."""
        a = np.deg2rad(self.angle_deg)
        c, s = np.cos(a), np.sin(a)
        return self.scale * np.array([[c, s], [-s, c]])


def align(moving: np.ndarray, transform: Similarity, order: int = 1) -> np.ndarray:
    """``moving`` (Y, X) resampled onto the reference grid (pixels mapped from outside the image are 0)."""
    centre = (np.array(moving.shape) - 1) / 2.0
    m = transform.matrix()
    offset = centre + np.array([transform.dy, transform.dx]) - m @ centre
    return ndimage.affine_transform(moving.astype(np.float64), m, offset=offset, order=order, mode="constant",
                                    cval=0.0)


def overlap_correlation(reference: np.ndarray, moving: np.ndarray, transform: Similarity) -> float:
    """Pearson r between ``reference`` and the aligned ``moving`` over the pixels both cover."""
    aligned = align(moving, transform)
    inside = align(np.ones_like(moving, dtype=np.float64), transform, order=0) > 0.5
    if inside.sum() < 16:
        return 0.0
    a, b = reference[inside].astype(np.float64), aligned[inside]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _log_polar_magnitude(image: np.ndarray, radius: int) -> np.ndarray:
    from skimage.filters import window
    from skimage.transform import warp_polar

    img = (image - image.mean()) * window("hann", image.shape)
    magnitude = np.fft.fftshift(np.abs(np.fft.fft2(img)))
    magnitude = np.log1p(magnitude)
    return warp_polar(magnitude, radius=radius, output_shape=(360, radius), scaling="log")


def estimate_similarity(reference: np.ndarray, moving: np.ndarray, *, refine: bool = True,
                        max_scale: float = 1.5) -> Similarity:
    """The similarity transform that aligns ``moving`` to ``reference`` (both (Y, X), the same shape).

    Parameters
    ----------
    reference, moving : numpy.ndarray
        Two images of the same content (e.g. predicted and real stain), any units.
    refine : bool
        Polish the Fourier estimate by maximising the overlap correlation.
    max_scale : float
        Scale estimates beyond this factor either way are taken as failures of the Fourier step (scale 1).
    """
    from skimage.registration import phase_cross_correlation

    ref = np.asarray(reference, np.float64)
    mov = np.asarray(moving, np.float64)
    radius = min(ref.shape) // 2
    (d_angle, d_logr), _, _ = phase_cross_correlation(_log_polar_magnitude(ref, radius),
                                                      _log_polar_magnitude(mov, radius), upsample_factor=10,
                                                      normalization=None)
    klog = radius / np.log(radius)
    scale = float(np.exp(d_logr / klog))
    angle = float(d_angle)  # warp_polar rows are degrees
    if not 1 / max_scale <= scale <= max_scale:
        scale = 1.0
    best = None
    # the magnitude spectrum cannot tell θ from θ + 180°, and the log-polar axes' directions depend on the
    # grid's conventions: try both signs of each, keep what correlates best
    candidates = [(a, k) for a in (angle, -angle, angle + 180.0, 180.0 - angle) for k in (scale, 1 / scale)]
    for a, k in candidates:
        rs = Similarity(0.0, 0.0, a, k)
        unrotated = align(mov, rs)
        (dy, dx), _, _ = phase_cross_correlation(ref, unrotated, upsample_factor=20, normalization=None)
        m = rs.matrix()
        ty, tx = m @ np.array([-dy, -dx])
        guess = Similarity(float(ty), float(tx), a, k)
        r = overlap_correlation(ref, mov, guess)
        if best is None or r > best[0]:
            best = (r, guess)
    assert best is not None
    estimate = best[1]
    return refine_similarity(ref, mov, estimate) if refine else estimate


def residual_shift(reference: np.ndarray, aligned: np.ndarray, transform: Similarity) -> tuple[float, float]:
    """The shift (dy, dx) px still left between ``reference`` and the ``aligned`` image (phase correlation over the
    central region that the transform filled from inside the moving image)."""
    from skimage.registration import phase_cross_correlation

    radius = float(np.hypot(*reference.shape)) / 2
    reach = np.hypot(transform.dy, transform.dx) + radius * (abs(np.deg2rad(transform.angle_deg)) + abs(transform.scale - 1))
    m = int(np.ceil(reach)) + 2
    if 2 * m + 16 > min(reference.shape):
        return float("nan"), float("nan")
    inner = (slice(m, -m), slice(m, -m))
    (dy, dx), _, _ = phase_cross_correlation(np.asarray(reference, np.float64)[inner],
                                             np.asarray(aligned, np.float64)[inner], upsample_factor=20,
                                             normalization=None)
    return float(dy), float(dx)


def refine_similarity(reference: np.ndarray, moving: np.ndarray, start: Similarity | None = None) -> Similarity:
    """The transform near ``start`` (default: the identity) that maximises the overlap correlation (Powell)."""
    ref = np.asarray(reference, np.float64)
    mov = np.asarray(moving, np.float64)
    start = start or Similarity()

    def loss(p: np.ndarray) -> float:
        return -overlap_correlation(ref, mov, Similarity(p[0], p[1], p[2], float(np.exp(p[3]))))

    x0 = np.array([start.dy, start.dx, start.angle_deg, np.log(start.scale)])
    result = optimize.minimize(loss, x0, method="Powell", options={"xtol": 1e-3, "ftol": 1e-6, "maxfev": 400})
    p = result.x if result.fun <= loss(x0) else x0
    angle_deg = (float(p[2]) + 180.0) % 360.0 - 180.0
    return Similarity(float(p[0]), float(p[1]), angle_deg, float(np.exp(p[3])))
