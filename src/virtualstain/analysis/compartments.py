"""PICS readout: dry mass of nuclei and cytoplasm on the phase map, from the real and from the virtual stain.

For each field the nuclei are segmented in the real and in the virtual nuclear stain the same way;
the cells are the foreground of the phase map itself (the lowest of three Otsu classes — background,
cytoplasm, nucleus — of the smoothed phase is background), so only the nucleus/cytoplasm split depends
on the stain. The same compartment masses are computed with either
nucleus mask, and matched nuclei (IoU ≥ 0.5) are compared one to one. No torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

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


@dataclass(frozen=True)
class FieldMasses:
    """Dry mass of one field's nuclei and cytoplasm (pg), and their ratio."""

    nucleus_pg: float
    cytoplasm_pg: float
    nc_ratio: float


@dataclass(frozen=True)
class CompartmentAgreement:
    """Nuclear and cytoplasmic dry mass with real vs virtual nuclei (see :func:`compartment_agreement`).

    Attributes
    ----------
    real, virtual : list of FieldMasses
        Per field, with the nuclei of the real and of the virtual stain.
    matched_nuclei : int
        Nuclei matched one to one (IoU ≥ 0.5).
    nucleus_mass_r : float
        Pearson r of the matched nuclei's masses (NaN below 3 matches or without spread).
    nucleus_mass_median_error : float
        Median of virtual/real − 1 over matched nuclei.
    total_nucleus_error, total_cytoplasm_error : float
        Summed over fields, virtual/real − 1.
    nc_ratio_real, nc_ratio_virtual : float
        Pooled nuclear / cytoplasmic mass.
    """

    real: list[FieldMasses]
    virtual: list[FieldMasses]
    matched_nuclei: int
    nucleus_mass_r: float
    nucleus_mass_median_error: float
    total_nucleus_error: float
    total_cytoplasm_error: float
    nc_ratio_real: float
    nc_ratio_virtual: float

    def to_dict(self) -> dict:
        """As in ``summary.json``: ``fields`` (per field ``{real, virtual}``) and the pooled numbers."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("real", "virtual")}
        return {"fields": [{"real": asdict(r), "virtual": asdict(v)} for r, v in zip(self.real, self.virtual)], **out}


def _field_masses(phase: np.ndarray, nuclei: np.ndarray, cells: np.ndarray, units: dict) -> FieldMasses:
    parts = compartment_dry_mass(phase, nuclei > 0, cells, **units)
    nucleus = sum(r["nucleus_dry_mass_pg"] for r in parts.rows)
    cytoplasm = sum(r["cytoplasm_dry_mass_pg"] for r in parts.rows)
    return FieldMasses(nucleus, cytoplasm, nucleus / cytoplasm if cytoplasm > 0 else float("nan"))


def compartment_agreement(phases: list[np.ndarray], real_nuclei: list[np.ndarray], virtual_nuclei: list[np.ndarray], *,
                          pixel_size_um: float, wavelength_um: float,
                          alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> CompartmentAgreement:
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
    CompartmentAgreement
    """
    units = dict(wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, alpha_ml_per_g=alpha_ml_per_g)
    real_fields: list[FieldMasses] = []
    virtual_fields: list[FieldMasses] = []
    matched_real: list[float] = []
    matched_virtual: list[float] = []
    for phase, real, virtual in zip(phases, real_nuclei, virtual_nuclei):
        cells = ndimage.label(cell_foreground(phase))[0]
        labels_real = segment_nuclei(real, pixel_size_um=pixel_size_um)
        labels_virtual = segment_nuclei(virtual, pixel_size_um=pixel_size_um)
        real_fields.append(_field_masses(phase, labels_real, cells, units))
        virtual_fields.append(_field_masses(phase, labels_virtual, cells, units))
        match = match_objects(labels_virtual, labels_real, pixel_size_um=pixel_size_um)
        if match.pairs:
            by_label_real = {r["label"]: r["dry_mass_pg"] for r in
                             object_dry_mass(phase, relabel_sequential(labels_real)[0], **units)}
            by_label_virtual = {r["label"]: r["dry_mass_pg"] for r in
                                object_dry_mass(phase, relabel_sequential(labels_virtual)[0], **units)}
            matched_real += [by_label_real[t] for _, t, _ in match.pairs]
            matched_virtual += [by_label_virtual[p] for p, _, _ in match.pairs]

    nucleus_real = sum(f.nucleus_pg for f in real_fields)
    nucleus_virtual = sum(f.nucleus_pg for f in virtual_fields)
    cytoplasm_real = sum(f.cytoplasm_pg for f in real_fields)
    cytoplasm_virtual = sum(f.cytoplasm_pg for f in virtual_fields)
    real_mass, virtual_mass = np.array(matched_real), np.array(matched_virtual)
    enough = len(real_mass) >= 3 and real_mass.std() > 0 and virtual_mass.std() > 0

    def ratio(a: float, b: float) -> float:
        return a / b - 1 if b > 0 else float("nan")

    return CompartmentAgreement(
        real=real_fields, virtual=virtual_fields,
        matched_nuclei=int(len(real_mass)),
        nucleus_mass_r=float(np.corrcoef(real_mass, virtual_mass)[0, 1]) if enough else float("nan"),
        nucleus_mass_median_error=float(np.median(virtual_mass / real_mass - 1)) if len(real_mass) else float("nan"),
        total_nucleus_error=ratio(nucleus_virtual, nucleus_real),
        total_cytoplasm_error=ratio(cytoplasm_virtual, cytoplasm_real),
        nc_ratio_real=nucleus_real / max(cytoplasm_real, 1e-12),
        nc_ratio_virtual=nucleus_virtual / max(cytoplasm_virtual, 1e-12),
    )
