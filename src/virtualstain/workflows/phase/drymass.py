"""``virtualstain drymass``: phase map(s) + labels or nucleus/cell masks → dry-mass table (and growth).

A single phase map gives one row per object. A time-lapse ``(T, Y, X)`` of phase maps
adds ``frame`` and ``time_h`` columns, and writes ``<table>_growth.csv`` (exponential
fits of the field and of every object seen in at least 3 frames) and
``<table>_growth.png`` (the curves).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..._atomic import atomic_path, check_output_suffix, refuse_overwriting_inputs, write_csv_atomic
from ...data.io import read_image
from ...data.phase_maps import read_phase_map
from ...data.units import check_pixel_size_um, check_wavelength_um
from ...errors import UserError
from ...optics import DEFAULT_ALPHA_ML_PER_G, compartment_dry_mass, fit_exponential_growth, mass_curves

OBJECT_COLUMNS = ["label", "area_um2", "dry_mass_pg", "mean_density_pg_per_um2", "mean_phase_rad",
                  "centroid_y_um", "centroid_x_um"]
COMPARTMENT_COLUMNS = ["label", "area_um2", "dry_mass_pg", "nucleus_area_um2", "nucleus_dry_mass_pg",
                       "cytoplasm_area_um2", "cytoplasm_dry_mass_pg", "nc_mass_ratio"]
GROWTH_COLUMNS = ["object", "n", "rate_per_h", "doubling_time_h", "doubling_time_ci_low_h", "doubling_time_ci_high_h",
                  "mass0_pg", "r2"]


@dataclass
class DryMassResult:
    """What :func:`measure_dry_mass` wrote and found.

    Attributes
    ----------
    rows : list of dict
        The table's rows.
    field_rows : list of dict
        Per frame: ``frame, time_h, dry_mass_pg, objects, confluence``.
    growth : list of dict
        Growth fits (time-lapses only).
    files : list of Path
        Files written.
    """

    rows: list[dict]
    field_rows: list[dict]
    growth: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _read_masks(path: str | os.PathLike, what: str, frames: int, shape: tuple[int, int]) -> np.ndarray:
    array, _ = read_image(path)
    array = np.squeeze(array)
    if array.ndim == 2:
        array = np.broadcast_to(array, (frames,) + array.shape)
    if array.shape[-2:] != shape or array.shape[0] != frames:
        raise UserError(f"{path}: {what} of shape {array.shape} does not match the phase map(s) {(frames,) + shape}; "
                        "give one mask per phase map (same Y, X) or one for all frames")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(array == np.round(array)):
            raise UserError(f"{path}: {what} holds fractional values; give integer labels (0 = background) "
                            "or a 0/1 mask, e.g. from `virtualstain segment`")
        array = array.astype(np.int64)
    return array


def _resolve(flag_value: float | None, file_value: float | None, check, name: str, path) -> float:
    if flag_value is not None and file_value is not None and not math.isclose(flag_value, file_value, rel_tol=1e-4):
        raise UserError(f"{path}: the file records {name} {file_value} µm but {flag_value} µm was given; "
                        "drop the flag to use the file's value, or fix the file")
    return check(flag_value if flag_value is not None else file_value)


def _growth_rows(field_rows: list[dict], rows: list[dict]) -> list[dict]:
    def row(name: str, times: list[float], masses: list[float]) -> dict | None:
        if len(times) < 3 or min(masses) <= 0:
            return None
        fit = fit_exponential_growth(np.array(times), np.array(masses))
        return {"object": name, "n": fit.n, "rate_per_h": fit.rate_per_h, "doubling_time_h": fit.doubling_time_h,
                "doubling_time_ci_low_h": fit.doubling_time_ci_h[0], "doubling_time_ci_high_h": fit.doubling_time_ci_h[1],
                "mass0_pg": fit.mass0_pg, "r2": fit.r2}

    out = [row("field", [r["time_h"] for r in field_rows], [r["dry_mass_pg"] for r in field_rows])]
    for label in sorted({r["label"] for r in rows}):
        own = [r for r in rows if r["label"] == label]
        out.append(row(str(label), [r["time_h"] for r in own], [r["dry_mass_pg"] for r in own]))
    return [r for r in out if r is not None]


def _growth_figure(path: Path, field_rows: list[dict], rows: list[dict], growth: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_field, ax_obj) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    t = np.array([r["time_h"] for r in field_rows])
    ax_field.plot(t, [r["dry_mass_pg"] for r in field_rows], "o", color="k", label="field")
    fit = next((g for g in growth if g["object"] == "field"), None)
    if fit:
        tt = np.linspace(t.min(), t.max(), 100)
        ax_field.plot(tt, fit["mass0_pg"] * np.exp(fit["rate_per_h"] * tt), "-", color="tab:red",
                      label=f"fit: doubling {fit['doubling_time_h']:.3g} h "
                            f"(95 % CI {fit['doubling_time_ci_low_h']:.3g}–{fit['doubling_time_ci_high_h']:.3g} h)")
    ax_field.set(xlabel="time (h)", ylabel="dry mass (pg)", title="whole field")
    ax_field.legend()
    labels = sorted({r["label"] for r in rows})
    for label in labels:
        own = [r for r in rows if r["label"] == label]
        ax_obj.plot([r["time_h"] for r in own], [r["dry_mass_pg"] for r in own], "-", lw=0.8, alpha=0.7,
                    label=f"object {label}")
    ax_obj.set(xlabel="time (h)", ylabel="dry mass (pg)", title="per object", yscale="log")
    if len(labels) <= 10:
        ax_obj.legend(fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def growth_paths(out: Path) -> tuple[Path, Path]:
    """The growth table and plot written beside the table ``out`` for a time-lapse."""
    return out.with_name(out.stem + "_growth.csv"), out.with_name(out.stem + "_growth.png")


def measure_dry_mass(phase: str | os.PathLike, out: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                     nucleus_mask: str | os.PathLike | None = None, cell_mask: str | os.PathLike | None = None,
                     wavelength_um: float | None = None, pixel_size_um: float | None = None,
                     alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G, interval_h: float = 1.0) -> DryMassResult:
    """Dry mass per object (``labels``) or per nucleus/cytoplasm compartment (both masks).

    Parameters
    ----------
    phase : path-like
        Phase TIFF, radians: ``(Y, X)`` or a time-lapse ``(T, Y, X)``.
    out : path-like
        The CSV table to write (``.csv``); it and the growth files must not be any of the inputs.
    labels : path-like, optional
        Instance labels (or a 0/1 mask), one image for all frames or one per frame
        with the same id for the same object (tracked).
    nucleus_mask, cell_mask : path-like, optional
        Nuclei and cells (masks or labels, real or virtual); give both, not ``labels``.
    wavelength_um, pixel_size_um : float, optional
        Default: from the phase file's metadata (as written by ``virtualstain phase``).
    alpha_ml_per_g : float
        Refractive increment α (mL/g).
    interval_h : float
        Time between frames of a time-lapse, hours.

    Returns
    -------
    DryMassResult
    """
    if (labels is None) == (nucleus_mask is None and cell_mask is None) or (nucleus_mask is None) != (cell_mask is None):
        raise UserError("give either --labels, or both --nucleus-mask and --cell-mask")
    out = check_output_suffix(out, (".csv",), "a CSV table")
    growth_csv, growth_png = growth_paths(out)
    refuse_overwriting_inputs([out, growth_csv, growth_png], [phase, labels, nucleus_mask, cell_mask],
                              "choose another --out file")
    if not 0 < alpha_ml_per_g <= 1:  # NaN fails too
        raise UserError(f"--alpha {alpha_ml_per_g}: the refractive increment is in mL/g, typically 0.18–0.20")
    if not (math.isfinite(interval_h) and interval_h > 0):
        raise UserError(f"--interval-h {interval_h} must be a positive number of hours")
    phase_map = read_phase_map(phase, time_lapse=True)
    stack = phase_map.phase
    wavelength_um = _resolve(wavelength_um, phase_map.wavelength_um, check_wavelength_um, "wavelength", phase)
    pixel_size_um = _resolve(pixel_size_um, phase_map.pixel_size_um, check_pixel_size_um, "pixel size", phase)
    frames, shape = stack.shape[0], stack.shape[1:]
    times = np.arange(frames) * interval_h
    units = dict(wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, alpha_ml_per_g=alpha_ml_per_g)

    if labels is not None:
        lab = _read_masks(labels, "labels", frames, shape)
        rows, field_rows = mass_curves(stack, lab, times, **units)
        columns = OBJECT_COLUMNS
    else:
        assert nucleus_mask is not None and cell_mask is not None  # both or labels, checked above
        nuclei = _read_masks(nucleus_mask, "nucleus mask", frames, shape)
        cells = _read_masks(cell_mask, "cell mask", frames, shape)
        rows, field_rows = [], []
        for i in range(frames):
            parts = compartment_dry_mass(stack[i], nuclei[i], cells[i], **units)
            rows += [{"frame": i, "time_h": float(times[i]), **r} for r in parts.rows]
            field_rows.append({"frame": i, "time_h": float(times[i]),
                               "dry_mass_pg": sum(r["dry_mass_pg"] for r in parts.rows), "objects": len(parts.rows),
                               "confluence": parts.confluence,
                               "nucleus_outside_cells_um2": parts.nucleus_outside_cells_um2})
        columns = COMPARTMENT_COLUMNS
    if not rows:
        raise UserError(f"{labels or cell_mask}: no objects (all pixels are 0); check the mask or segmentation")

    result = DryMassResult(rows=rows, field_rows=field_rows)
    if frames > 1:
        columns = ["frame", "time_h"] + columns
        result.growth = _growth_rows(field_rows, rows)
        write_csv_atomic(growth_csv, result.growth, GROWTH_COLUMNS)
        _growth_figure(growth_png, field_rows, rows, result.growth)
        result.files += [growth_csv, growth_png]
    result.files.insert(0, write_csv_atomic(out, rows, columns))
    return result
