"""PICS readout: dry mass of nuclei and cytoplasm on the phase map, from the real and from the virtual stain.

For each field the nuclei are segmented in the real and in the virtual nuclear stain the same way;
the cells are the foreground of the phase map itself (the lowest of three Otsu classes — background,
cytoplasm, nucleus — of the smoothed phase is background), so only the nucleus/cytoplasm split depends
on the stain. The same compartment masses are computed with either
nucleus mask, and matched nuclei (IoU ≥ 0.5) are compared one to one. No torch.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu
from skimage.segmentation import relabel_sequential

from ..optics import DEFAULT_ALPHA_ML_PER_G, compartment_dry_mass, object_dry_mass
from .matching import match_objects
from .segmentation import segment_nuclei


def cell_foreground(phase: np.ndarray, smooth_px: float = 1.0) -> np.ndarray:
    """Cells on a phase map: above the first of three Otsu thresholds (background | cytoplasm | nucleus)."""
    smooth = ndimage.gaussian_filter(np.asarray(phase, np.float64), smooth_px)
    if smooth.min() == smooth.max():
        return np.zeros(smooth.shape, bool)
    return smooth > threshold_multiotsu(smooth, classes=3)[0]


def _field_masses(phase: np.ndarray, nuclei: np.ndarray, cells: np.ndarray, units: dict) -> dict:
    parts = compartment_dry_mass(phase, nuclei > 0, cells, **units)
    nucleus = sum(r["nucleus_dry_mass_pg"] for r in parts.rows)
    cytoplasm = sum(r["cytoplasm_dry_mass_pg"] for r in parts.rows)
    return {"nucleus_pg": nucleus, "cytoplasm_pg": cytoplasm,
            "nc_ratio": nucleus / cytoplasm if cytoplasm > 0 else float("nan")}


def compartment_agreement(phases: list[np.ndarray], real_nuclei: list[np.ndarray], virtual_nuclei: list[np.ndarray], *,
                          pixel_size_um: float, wavelength_um: float,
                          alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> dict:
    """Nuclear and cytoplasmic dry mass from real vs virtual nuclear stains over several fields.

    Parameters
    ----------
    phases : list of numpy.ndarray
        ``(Y, X)`` phase maps, radians.
    real_nuclei, virtual_nuclei : list of numpy.ndarray
        ``(Y, X)`` nuclear stain images (real target, prediction) of the same fields.
    pixel_size_um, wavelength_um : float
        Sampling and wavelength, µm.
    alpha_ml_per_g : float
        Refractive increment α.

    Returns
    -------
    dict
        ``fields``: per field ``{real, virtual}`` totals (``nucleus_pg``, ``cytoplasm_pg``, ``nc_ratio``);
        ``matched_nuclei``, ``nucleus_mass_r`` (Pearson r of matched nuclei's masses),
        ``nucleus_mass_median_error`` (median of virtual/real − 1), ``total_nucleus_error``
        and ``total_cytoplasm_error`` (summed over fields, virtual/real − 1), ``nc_ratio_real``,
        ``nc_ratio_virtual`` (pooled).
    """
    units = dict(wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, alpha_ml_per_g=alpha_ml_per_g)
    fields, real_mass, virtual_mass = [], [], []
    for phase, real, virtual in zip(phases, real_nuclei, virtual_nuclei):
        cells = ndimage.label(cell_foreground(phase))[0]
        labels_real = segment_nuclei(real, pixel_size_um=pixel_size_um)
        labels_virtual = segment_nuclei(virtual, pixel_size_um=pixel_size_um)
        fields.append({"real": _field_masses(phase, labels_real, cells, units),
                       "virtual": _field_masses(phase, labels_virtual, cells, units)})
        match = match_objects(labels_virtual, labels_real, pixel_size_um=pixel_size_um)
        if match.pairs:
            by_label_real = {r["label"]: r["dry_mass_pg"] for r in
                             object_dry_mass(phase, relabel_sequential(labels_real)[0], **units)}
            by_label_virtual = {r["label"]: r["dry_mass_pg"] for r in
                                object_dry_mass(phase, relabel_sequential(labels_virtual)[0], **units)}
            real_mass += [by_label_real[t] for _, t, _ in match.pairs]
            virtual_mass += [by_label_virtual[p] for p, _, _ in match.pairs]

    def total(kind: str, part: str) -> float:
        return sum(f[kind][part] for f in fields)

    real_mass, virtual_mass = np.array(real_mass), np.array(virtual_mass)
    enough = len(real_mass) >= 3 and real_mass.std() > 0 and virtual_mass.std() > 0

    def ratio(a: float, b: float) -> float:
        return a / b - 1 if b > 0 else float("nan")

    return {
        "fields": fields,
        "matched_nuclei": int(len(real_mass)),
        "nucleus_mass_r": float(np.corrcoef(real_mass, virtual_mass)[0, 1]) if enough else float("nan"),
        "nucleus_mass_median_error": float(np.median(virtual_mass / real_mass - 1)) if len(real_mass) else float("nan"),
        "total_nucleus_error": ratio(total("virtual", "nucleus_pg"), total("real", "nucleus_pg")),
        "total_cytoplasm_error": ratio(total("virtual", "cytoplasm_pg"), total("real", "cytoplasm_pg")),
        "nc_ratio_real": total("real", "nucleus_pg") / max(total("real", "cytoplasm_pg"), 1e-12),
        "nc_ratio_virtual": total("virtual", "nucleus_pg") / max(total("virtual", "cytoplasm_pg"), 1e-12),
    }
