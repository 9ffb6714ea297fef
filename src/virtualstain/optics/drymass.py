"""Dry mass from quantitative phase: per object, per compartment, and of a homogeneous sphere.

The surface density of non-aqueous (dry) matter is ``σ = λ·φ/(2π·α)``: with ``λ`` in
µm and the refractive increment ``α`` in mL/g (= µm³/pg), ``σ`` is in pg/µm². Mass is
``Σ σ · pixel area``.

Default ``α = 0.18 mL/g``: the average refractive increment of cellular protein and
nucleic acid (Barer 1952; Zangle & Teitell 2014 report 0.18–0.21 for cells), also the
default of *drymass*. The SLIM/PICS papers use 0.2; pass ``alpha_ml_per_g=0.2`` to
compare with them (masses scale as ``1/α``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares

DEFAULT_ALPHA_ML_PER_G = 0.18


def surface_density(phase_rad: np.ndarray, *, wavelength_um: float,
                    alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> np.ndarray:
    """Dry-mass surface density ``σ = λ·φ/(2π·α)`` in pg/µm²."""
    if alpha_ml_per_g <= 0 or wavelength_um <= 0:
        raise ValueError(f"wavelength ({wavelength_um} µm) and alpha ({alpha_ml_per_g} mL/g) must be positive")
    return np.asarray(phase_rad, dtype=float) * (wavelength_um / (2 * np.pi * alpha_ml_per_g))


def height_from_phase(phase_rad: np.ndarray, *, wavelength_um: float, delta_n: float) -> np.ndarray:
    """Thickness (µm) of a homogeneous object of index contrast ``Δn``: ``h = φ·λ/(2π·Δn)``."""
    if delta_n == 0:
        raise ValueError("delta_n must be non-zero")
    return np.asarray(phase_rad, dtype=float) * (wavelength_um / (2 * np.pi * delta_n))


def mask_dry_mass(phase_rad: np.ndarray, mask: np.ndarray, *, wavelength_um: float, pixel_size_um: float,
                  alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> float:
    """Dry mass (pg) of the pixels where ``mask`` is true."""
    sigma = surface_density(phase_rad, wavelength_um=wavelength_um, alpha_ml_per_g=alpha_ml_per_g)
    return float(sigma[np.asarray(mask, bool)].sum() * pixel_size_um ** 2)


def as_labels(mask_or_labels: np.ndarray) -> np.ndarray:
    """Integer labels as given, or the 8-connected components of a boolean/0-1 mask."""
    array = np.asarray(mask_or_labels)
    if array.dtype == bool or (np.issubdtype(array.dtype, np.integer) and array.max(initial=0) <= 1):
        return ndimage.label(array > 0, structure=np.ones((3, 3)))[0]
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers or a boolean mask, got {array.dtype}")
    return array


def object_dry_mass(phase_rad: np.ndarray, labels: np.ndarray, *, wavelength_um: float, pixel_size_um: float,
                    alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> list[dict]:
    """One row per labelled object: label, area, dry mass, mean density and phase, centroid.

    Parameters
    ----------
    phase_rad : numpy.ndarray
        ``(Y, X)`` phase, radians.
    labels : numpy.ndarray
        ``(Y, X)`` instance labels (0 = background) or a boolean mask (split into
        connected components).

    Returns
    -------
    list of dict
        Keys ``label, area_um2, dry_mass_pg, mean_density_pg_per_um2, mean_phase_rad,
        centroid_y_um, centroid_x_um``.
    """
    labels = as_labels(labels)
    if labels.shape != np.shape(phase_rad):
        raise ValueError(f"labels shape {labels.shape} differs from phase shape {np.shape(phase_rad)}")
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return []
    sigma = surface_density(phase_rad, wavelength_um=wavelength_um, alpha_ml_per_g=alpha_ml_per_g)
    area_px = ndimage.sum_labels(np.ones_like(sigma), labels, ids)
    mass = ndimage.sum_labels(sigma, labels, ids) * pixel_size_um ** 2
    mean_phase = ndimage.mean(np.asarray(phase_rad, float), labels, ids)
    centroids = ndimage.center_of_mass(np.ones_like(sigma), labels, ids)
    return [{"label": int(i), "area_um2": float(a * pixel_size_um ** 2), "dry_mass_pg": float(m),
             "mean_density_pg_per_um2": float(m / (a * pixel_size_um ** 2)), "mean_phase_rad": float(p),
             "centroid_y_um": float(c[0] * pixel_size_um), "centroid_x_um": float(c[1] * pixel_size_um)}
            for i, a, m, p, c in zip(ids, area_px, mass, mean_phase, centroids)]


@dataclass
class Compartments:
    """Dry mass split into nucleus and cytoplasm (see :func:`compartment_dry_mass`).

    Attributes
    ----------
    rows : list of dict
        One per cell: ``label, area_um2, dry_mass_pg, nucleus_area_um2, nucleus_dry_mass_pg,
        cytoplasm_area_um2, cytoplasm_dry_mass_pg, nc_mass_ratio`` (nucleus/cytoplasm mass).
    confluence : float
        Fraction of the field covered by cells.
    nucleus_outside_cells_um2 : float
        Nucleus-mask area that lies in no cell (a sign of mismatched masks).
    """

    rows: list[dict]
    confluence: float
    nucleus_outside_cells_um2: float


def confluence(cell_mask: np.ndarray) -> float:
    """Fraction of the field covered by cells (area fraction of a mask or label image)."""
    return float(np.count_nonzero(cell_mask) / np.size(cell_mask))


def compartment_dry_mass(phase_rad: np.ndarray, nucleus_mask: np.ndarray, cell_mask: np.ndarray, *,
                         wavelength_um: float, pixel_size_um: float,
                         alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> Compartments:
    """Nuclear and cytoplasmic dry mass of every cell (PICS).

    Parameters
    ----------
    phase_rad : numpy.ndarray
        ``(Y, X)`` phase, radians.
    nucleus_mask : numpy.ndarray
        ``(Y, X)`` nuclei, boolean or labels (real or virtual stain, segmented).
    cell_mask : numpy.ndarray
        ``(Y, X)`` cells, boolean (split into connected components) or labels.

    Returns
    -------
    Compartments
        The cytoplasm of a cell is the cell minus its nucleus pixels; cell mass is
        exactly nucleus + cytoplasm mass.
    """
    phase = np.asarray(phase_rad, dtype=float)
    cells = as_labels(cell_mask)
    nucleus = np.asarray(nucleus_mask) > 0
    for name, array in (("nucleus mask", nucleus), ("cell mask", cells)):
        if array.shape != phase.shape:
            raise ValueError(f"{name} shape {array.shape} differs from phase shape {phase.shape}")
    area = pixel_size_um ** 2
    sigma = surface_density(phase, wavelength_um=wavelength_um, alpha_ml_per_g=alpha_ml_per_g)
    ids = np.unique(cells[cells > 0])
    nuc_labels = np.where(nucleus, cells, 0)
    cyto_labels = np.where(nucleus, 0, cells)
    rows = []
    if ids.size:
        cell_px = ndimage.sum_labels(np.ones_like(sigma), cells, ids)
        nuc_px = ndimage.sum_labels(np.ones_like(sigma), nuc_labels, ids)
        nuc_mass = ndimage.sum_labels(sigma, nuc_labels, ids) * area
        cyto_mass = ndimage.sum_labels(sigma, cyto_labels, ids) * area
        for i, c_px, n_px, n_m, c_m in zip(ids, cell_px, nuc_px, nuc_mass, cyto_mass):
            rows.append({"label": int(i), "area_um2": float(c_px * area), "dry_mass_pg": float(n_m + c_m),
                         "nucleus_area_um2": float(n_px * area), "nucleus_dry_mass_pg": float(n_m),
                         "cytoplasm_area_um2": float((c_px - n_px) * area), "cytoplasm_dry_mass_pg": float(c_m),
                         "nc_mass_ratio": float(n_m / c_m) if c_m > 0 else float("nan")})
    outside = float(np.count_nonzero(nucleus & (cells == 0)) * area)
    return Compartments(rows=rows, confluence=confluence(cells), nucleus_outside_cells_um2=outside)


def sphere_phase(shape: tuple[int, int], *, radius_um: float, delta_n: float, wavelength_um: float,
                 pixel_size_um: float, center_px: tuple[float, float] | None = None,
                 supersample: int = 1) -> np.ndarray:
    """Projected phase of a homogeneous sphere: ``φ(r) = (2π/λ)·Δn·2·sqrt(R² − r²)``.

    ``supersample`` > 1 averages ``supersample²`` sub-pixel samples per pixel (the
    pixel-integrated phase, so the total dry mass is exact to ~1e-5).
    """
    cy, cx = center_px if center_px is not None else ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    yy = (np.arange(shape[0]) - cy)[:, None] + offsets[None, :]  # (Y, s)
    xx = (np.arange(shape[1]) - cx)[:, None] + offsets[None, :]  # (X, s)
    r2 = (yy[:, None, :, None] ** 2 + xx[None, :, None, :] ** 2) * pixel_size_um ** 2  # (Y, X, s, s)
    chord = 2 * np.sqrt(np.clip(radius_um ** 2 - r2, 0, None))
    return (2 * np.pi / wavelength_um) * delta_n * chord.mean(axis=(2, 3))


def sphere_dry_mass(radius_um: float, delta_n: float, alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> float:
    """Dry mass (pg) of a homogeneous sphere: ``Δn · (4/3)πR³ / α``."""
    return delta_n * 4 / 3 * np.pi * radius_um ** 3 / alpha_ml_per_g


@dataclass
class SphereFit:
    """Least-squares fit of :func:`sphere_phase` (plus a constant offset) to a phase map.

    Attributes: ``center_y_px, center_x_px`` (px), ``radius_um``, ``delta_n``,
    ``offset_rad`` and the RMS residual ``rms_rad``.
    """

    center_y_px: float
    center_x_px: float
    radius_um: float
    delta_n: float
    offset_rad: float
    rms_rad: float

    def disk(self, shape: tuple[int, int], pixel_size_um: float, scale: float = 1.0) -> np.ndarray:
        """Boolean disc of radius ``scale × radius_um`` around the fitted centre."""
        yy, xx = np.indices(shape, dtype=float)
        return np.hypot(yy - self.center_y_px, xx - self.center_x_px) * pixel_size_um <= scale * self.radius_um


def fit_sphere(phase_rad: np.ndarray, *, wavelength_um: float, pixel_size_um: float) -> SphereFit:
    """Fit a homogeneous sphere's projected phase to a (background-corrected) phase map.

    The start is the phase-weighted centroid of the pixels above half the maximum and
    the radius of a disc of their area.
    """
    phase = np.asarray(phase_rad, dtype=float)
    top = phase > 0.5 * phase.max()
    yy, xx = np.indices(phase.shape, dtype=float)
    weights = phase * top
    cy0, cx0 = (weights * yy).sum() / weights.sum(), (weights * xx).sum() / weights.sum()
    r0 = np.sqrt(top.sum() / np.pi) * pixel_size_um * 1.2
    dn0 = phase.max() * wavelength_um / (4 * np.pi * r0)

    def residual(p: np.ndarray) -> np.ndarray:
        cy, cx, radius, dn, offset = p
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) * pixel_size_um ** 2
        model = (4 * np.pi / wavelength_um) * dn * np.sqrt(np.clip(radius ** 2 - r2, 0, None)) + offset
        return (model - phase).ravel()

    fit = least_squares(residual, [cy0, cx0, r0, dn0, 0.0], x_scale="jac")
    cy, cx, radius, dn, offset = fit.x
    return SphereFit(float(cy), float(cx), float(abs(radius)), float(dn), float(offset),
                     float(np.sqrt(np.mean(fit.fun ** 2))))
