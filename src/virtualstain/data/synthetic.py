"""Synthetic paired images of cells with nuclei, deterministic by seed.

Each field has cells (Voronoi territories around random seeds, limited to a radius),
an elliptical nucleus per cell, and

* a label-free **input**: ``"phase"`` — an optical-path map in radians (cytoplasm dome + taller
  nucleus + nucleoli), or ``"brightfield"`` — the partially coherent bright-field image of that phase
  object 1 µm out of focus (:func:`~virtualstain.optics.brightfield_intensity`: λ 0.55 µm, NA 0.3,
  condenser/objective NA ratio 0.3), in which nuclei show mostly as edges and halos, so the input alone
  is a weak predictor of the stains (Pearson r ≈ 0.4 with the nuclear stain, ≈ 0.9 for phase);
* fluorescence **targets**: ``nuclei`` (Hoechst-like, textured) and ``membrane``
  (cell outlines), with a camera offset, Poisson-like shot noise and read noise.

Used by ``virtualstain demo`` and by the fast tests. Arrays are channels-first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .._atomic import write_csv_atomic
from ..optics import brightfield_intensity
from .io import write_tiff

TARGET_NAMES = ("nuclei", "membrane")


@dataclass
class SyntheticField:
    """One synthetic field: ``input`` (1, ...), ``target`` (2, ...), the phase map (rad), instance labels."""

    input: np.ndarray
    target: np.ndarray
    phase: np.ndarray
    nuclei_labels: np.ndarray
    cell_labels: np.ndarray


def _seeds(shape: tuple[int, int], n: int, min_dist: float, rng: np.random.Generator) -> np.ndarray:
    pts = np.empty((n, 2))
    count = 0
    for _ in range(n * 30):
        p = rng.uniform([0, 0], shape)
        if count == 0 or np.hypot(*(pts[:count] - p).T).min() >= min_dist:
            pts[count] = p
            count += 1
            if count == n:
                break
    return pts[:count]


#: The bright-field optics of the synthetic ``"brightfield"`` input: defocus and wavelength (µm), objective NA,
#: condenser/objective NA ratio.
BRIGHTFIELD_Z_UM, BRIGHTFIELD_WAVELENGTH_UM, BRIGHTFIELD_NA, BRIGHTFIELD_COHERENCE = 1.0, 0.55, 0.3, 0.3


def make_field(shape: tuple[int, ...] = (256, 256), seed: int = 0, modality: str = "phase",
               cell_radius_px: float = 18.0, density: float = 0.7, noise: float = 0.02,
               pixel_size_um: float = 0.5) -> SyntheticField:
    """Make one synthetic paired field.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` for 2D or ``(Z, Y, X)`` for 3D.
    seed : int
        Random seed; the same seed gives the same field.
    modality : {"phase", "brightfield"}
        Kind of label-free input.
    cell_radius_px : float
        Typical cell radius in pixels (nuclei are ~45 % of it).
    density : float
        Fraction of the area covered by cells (roughly).
    noise : float
        Relative noise level of the input.
    pixel_size_um : float
        Sampling of the bright-field optics, µm (``"brightfield"`` only; 2D only).

    Returns
    -------
    SyntheticField
        ``input`` (1, *shape) float32 (radians for phase, intensity / background for bright field),
        ``target`` (2, *shape) float32 counts, ``phase`` (*shape) float32 radians, and 2D (or 3D) instance labels.
    """
    if modality not in ("phase", "brightfield"):
        raise ValueError(f"modality must be 'phase' or 'brightfield', got {modality!r}")
    if modality == "brightfield" and len(shape) == 3:
        raise ValueError("the synthetic bright-field input is 2D; use modality='phase' for volumes")
    rng = np.random.default_rng(seed)
    yx = (int(shape[-2]), int(shape[-1]))
    area = yx[0] * yx[1]
    n_cells = max(1, int(density * area / (np.pi * cell_radius_px ** 2)))
    seeds = _seeds(yx, n_cells, 1.3 * cell_radius_px, rng)
    markers = np.zeros(yx, np.int32)
    idx = np.clip(seeds.astype(int), 0, np.array(yx) - 1)
    markers[idx[:, 0], idx[:, 1]] = np.arange(1, len(seeds) + 1)
    dist, (iy, ix) = ndi.distance_transform_edt(markers == 0, return_indices=True)
    radius = cell_radius_px * rng.uniform(0.8, 1.25, len(seeds) + 1)
    cells = markers[iy, ix]
    cells[dist > radius[cells]] = 0

    yy, xx = np.mgrid[: yx[0], : yx[1]].astype(np.float32)
    nuclei = np.zeros(yx, np.int32)
    nucleus_height = np.zeros(yx, np.float32)
    nucleoli = np.zeros(yx, np.float32)
    brightness = np.zeros(yx, np.float32)
    half = int(np.ceil(cell_radius_px)) + 2  # a nucleus (semi-axis ≤ 0.5 radius) lies well inside this box
    for k, (cy, cx) in enumerate(seeds, start=1):
        a = cell_radius_px * rng.uniform(0.38, 0.5)
        b = a * rng.uniform(0.7, 1.0)
        th = rng.uniform(0, np.pi)
        box = (slice(max(0, int(cy) - half), int(cy) + half + 1), slice(max(0, int(cx) - half), int(cx) + half + 1))
        by, bx = yy[box], xx[box]
        dy, dx = by - cy, bx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / a
        v = (-dx * np.sin(th) + dy * np.cos(th)) / b
        r2 = u ** 2 + v ** 2
        inside = (r2 < 1) & (cells[box] == k)
        nuclei[box][inside] = k
        nucleus_height[box][inside] = np.sqrt(1 - r2[inside])
        brightness[box][inside] = rng.uniform(0.6, 1.4)
        for _ in range(2):
            oy, ox = cy + rng.normal(0, 0.3 * b), cx + rng.normal(0, 0.3 * a)
            nucleoli[box] += np.exp(-((by - oy) ** 2 + (bx - ox) ** 2) / (2 * (0.12 * a) ** 2)) * inside

    cyto = np.clip(1 - dist / np.maximum(radius[cells], 1e-6), 0, 1) * (cells > 0)
    cyto = ndi.gaussian_filter(cyto.astype(np.float32), 1.5)
    phase2d = 0.6 * cyto + 1.2 * ndi.gaussian_filter(nucleus_height, 1.0) + 0.5 * nucleoli

    texture = ndi.gaussian_filter(rng.normal(size=yx).astype(np.float32), 1.2)
    dna = ndi.gaussian_filter((nuclei > 0) * brightness * (1 + 0.6 * texture) + 0.2 * nucleoli, 1.0)
    edges = ndi.morphological_gradient(cells, size=3) > 0
    membrane = ndi.gaussian_filter(edges.astype(np.float32), 1.0) * 1.5 + 0.1 * cyto

    if len(shape) == 3:
        nz = shape[0]
        z = (np.arange(nz, dtype=np.float32) - nz / 2) / max(nz / 4, 1)
        zprof_cell = np.clip(1 - z ** 2 / 4, 0, 1)[:, None, None]
        zprof_nuc = np.exp(-z ** 2 / 2)[:, None, None]
        phase = zprof_cell * 0.6 * cyto + zprof_nuc * (1.2 * nucleus_height + 0.5 * nucleoli)
        phase = ndi.gaussian_filter(phase, (1.0, 0.7, 0.7))
        dna = dna[None] * zprof_nuc
        membrane = membrane[None] * zprof_cell
        nuclei = np.where(zprof_nuc > 0.3, nuclei[None], 0)
        cells = np.where(zprof_cell > 0.05, cells[None], 0)
    else:
        phase = phase2d

    if modality == "brightfield":
        image = brightfield_intensity(phase.astype(np.float64), z_um=BRIGHTFIELD_Z_UM,
                                      wavelength_um=BRIGHTFIELD_WAVELENGTH_UM, pixel_size_um=pixel_size_um,
                                      na_obj=BRIGHTFIELD_NA, coherence=BRIGHTFIELD_COHERENCE, padding="reflect")
        image = image + noise * rng.normal(size=image.shape)
    else:
        image = phase + noise * 1.5 * rng.normal(size=phase.shape)

    offset = 100.0
    targets = []
    for gain, sig in ((2000.0, dna), (1200.0, membrane)):
        expected = offset + gain * np.clip(sig, 0, None)
        counts = expected + np.sqrt(expected) * rng.normal(size=expected.shape) + 3.0 * rng.normal(size=expected.shape)
        targets.append(counts)
    return SyntheticField(
        input=np.asarray(image, np.float32)[None],
        target=np.stack(targets).astype(np.float32),
        phase=np.asarray(phase, np.float32),
        nuclei_labels=nuclei.astype(np.int32),
        cell_labels=cells.astype(np.int32),
    )


def write_dataset(folder: str | os.PathLike, n_fields: int = 4, shape: tuple[int, ...] = (256, 256), seed: int = 0,
                  modality: str = "phase", pixel_size_um: float = 0.5, splits: list[str] | None = None) -> Path:
    """Write synthetic fields as TIFFs plus a ``manifest.csv``; returns the manifest path.

    Files: ``input/field_NNN.tif``, ``nuclei/field_NNN.tif``, ``membrane/field_NNN.tif``,
    ``labels/field_NNN.tif`` (nuclei instance labels) and, for a bright-field input, ``phase/field_NNN.tif``
    (the object's phase, rad). Row i of the manifest is field i. ``splits`` optionally gives each
    field's split; otherwise splitting is automatic.
    """
    folder = Path(folder)
    rows = []
    for i in range(n_fields):
        f = make_field(shape, seed=seed + i, modality=modality, pixel_size_um=pixel_size_um)
        name = f"field_{i:03d}.tif"
        write_tiff(folder / "input" / name, f.input, pixel_size_um=pixel_size_um, channel_names=[modality])
        if modality != "phase":
            write_tiff(folder / "phase" / name, f.phase[None], pixel_size_um=pixel_size_um, channel_names=["phase"])
        for c, stain in enumerate(TARGET_NAMES):
            write_tiff(folder / stain / name, f.target[c:c + 1], pixel_size_um=pixel_size_um, channel_names=[stain])
        write_tiff(folder / "labels" / name, f.nuclei_labels[None].astype(np.float32), pixel_size_um=pixel_size_um,
                   channel_names=["nuclei_labels"])
        row = {"input": f"input/{name}", "target": ";".join(f"{s}/{name}" for s in TARGET_NAMES),
               "group": f"field{i}", "pixel_size_um": pixel_size_um}
        if splits:
            row["split"] = splits[i]
        rows.append(row)
    return write_csv_atomic(folder / "manifest.csv", rows, list(rows[0].keys()))


@dataclass
class GrowthSeries:
    """A synthetic phase time-lapse whose nuclei and cytoplasm grow exponentially at known rates.

    Attributes
    ----------
    phase : numpy.ndarray
        ``(T, Y, X)`` float32 radians.
    nuclei_labels, cell_labels : numpy.ndarray
        ``(Y, X)`` int32 instance labels (the cells keep their place and shape; their dry mass grows).
    times_h : numpy.ndarray
        ``(T,)`` hours.
    doubling_nucleus_h, doubling_cytoplasm_h : float
        The true doubling times of every nucleus's and every cytoplasm's dry mass.
    pixel_size_um : float
    """

    phase: np.ndarray
    nuclei_labels: np.ndarray
    cell_labels: np.ndarray
    times_h: np.ndarray
    doubling_nucleus_h: float
    doubling_cytoplasm_h: float
    pixel_size_um: float


def growth_time_lapse(shape: tuple[int, int] = (256, 256), frames: int = 8, interval_h: float = 2.0,
                      doubling_nucleus_h: float = 20.0, doubling_cytoplasm_h: float = 26.0, seed: int = 0,
                      noise_rad: float = 0.01, pixel_size_um: float = 0.5) -> GrowthSeries:
    """A field of :func:`make_field` whose phase inside the nuclei is multiplied by ``2^(t / doubling_nucleus_h)``
    and everywhere else (the cytoplasm, with its smooth rim) by ``2^(t / doubling_cytoplasm_h)`` at
    ``t = 0, interval_h, …``, plus Gaussian
    noise of ``noise_rad``: dry mass is proportional to the integrated phase, so each compartment's mass doubles in
    exactly its doubling time (no motion, no division)."""
    f = make_field(shape, seed=seed, modality="phase", pixel_size_um=pixel_size_um)
    nucleus = f.nuclei_labels > 0
    times = np.arange(frames) * float(interval_h)
    rng = np.random.default_rng(seed)
    stack = []
    for t in times:  # all phase outside the nuclei is cytoplasm (also the smooth rim beyond the cell labels)
        gain = np.where(nucleus, 2 ** (t / doubling_nucleus_h), 2 ** (t / doubling_cytoplasm_h))
        stack.append(f.phase * gain + noise_rad * rng.normal(size=f.phase.shape))
    return GrowthSeries(np.asarray(stack, np.float32), f.nuclei_labels, f.cell_labels, times, float(doubling_nucleus_h),
                        float(doubling_cytoplasm_h), pixel_size_um)
