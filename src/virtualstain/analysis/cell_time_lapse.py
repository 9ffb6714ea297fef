"""PICS's readout over time: per cell and frame, nucleus and cytoplasm dry mass, followed along nucleus tracks.

Given a phase time-lapse (radians) with nucleus and cell instance labels per frame (cell k contains nucleus k, as
:func:`~virtualstain.analysis.whole_cells.segment_cells` makes them), the nuclei are tracked
(:func:`~virtualstain.analysis.tracking.track_labels`: laptrack, gap closing, divisions as parent links) and each cell
takes its nucleus's track id. Then, per cell and frame, :func:`~virtualstain.optics.compartment_dry_mass` gives the
nucleus and cytoplasm masses and areas and the N/C ratio; per frame, the confluence, the cell count and the total
masses; per compartment, exponential growth fits (:func:`~virtualstain.optics.fit_exponential_growth`) of the field's
totals and of every track seen in at least :data:`MIN_FRAMES_FIT` frames, with doubling times and their confidence
intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..optics import DEFAULT_ALPHA_ML_PER_G, compartment_dry_mass, fit_exponential_growth
from .tracking import Tracks, track_labels

#: Frames a track needs for its own growth fit.
MIN_FRAMES_FIT = 3
#: The compartments fitted, and the mass column of each.
COMPARTMENTS = {"nucleus": "nucleus_dry_mass_pg", "cytoplasm": "cytoplasm_dry_mass_pg", "cell": "dry_mass_pg"}

CELL_COLUMNS = ["frame", "time_h", "track_id", "parent_id", "area_um2", "dry_mass_pg", "nucleus_area_um2",
                "nucleus_dry_mass_pg", "cytoplasm_area_um2", "cytoplasm_dry_mass_pg", "nc_mass_ratio"]
FIELD_COLUMNS = ["frame", "time_h", "cell_count", "confluence", "dry_mass_pg", "nucleus_dry_mass_pg",
                 "cytoplasm_dry_mass_pg"]
GROWTH_COLUMNS = ["object", "compartment", "n", "rate_per_h", "doubling_time_h", "doubling_time_ci_low_h",
                  "doubling_time_ci_high_h", "mass0_pg", "r2"]


@dataclass
class TimeLapseTables:
    """What :func:`measure_time_lapse` found.

    Attributes
    ----------
    cells : list of dict
        One row per cell and frame (:data:`CELL_COLUMNS`).
    fields : list of dict
        One row per frame (:data:`FIELD_COLUMNS`).
    growth : list of dict
        One row per fitted object (``field`` or ``track <id>``) and compartment (:data:`GROWTH_COLUMNS`).
    tracks : Tracks
        The nucleus tracks (CTC form).
    cells_tracked : numpy.ndarray
        ``(T, Y, X)`` cell labels carrying their nucleus's track id.
    """

    cells: list[dict]
    fields: list[dict]
    growth: list[dict]
    tracks: Tracks
    cells_tracked: np.ndarray

    def field_doubling_h(self, compartment: str) -> float:
        """The field's fitted doubling time (h) of ``compartment`` (``nucleus``, ``cytoplasm``, ``cell``)."""
        return next(r["doubling_time_h"] for r in self.growth if r["object"] == "field" and r["compartment"] == compartment)


def _track_ids(nuclei: np.ndarray, tracked: np.ndarray) -> dict[int, int]:
    """Per original nucleus label of one frame, the track label covering most of its pixels."""
    ids = {}
    for label in np.unique(nuclei[nuclei > 0]):
        under = tracked[nuclei == label]
        under = under[under > 0]
        if under.size:
            ids[int(label)] = int(np.bincount(under).argmax())
    return ids


def _growth_row(name: str, compartment: str, times: list[float], masses: list[float]) -> dict | None:
    if len(times) < MIN_FRAMES_FIT or min(masses) <= 0:
        return None
    fit = fit_exponential_growth(np.asarray(times), np.asarray(masses))
    return {"object": name, "compartment": compartment, "n": fit.n, "rate_per_h": fit.rate_per_h,
            "doubling_time_h": fit.doubling_time_h, "doubling_time_ci_low_h": fit.doubling_time_ci_h[0],
            "doubling_time_ci_high_h": fit.doubling_time_ci_h[1], "mass0_pg": fit.mass0_pg, "r2": fit.r2}


def measure_time_lapse(phase: np.ndarray, nuclei: np.ndarray, cells: np.ndarray, times_h: np.ndarray, *,
                       pixel_size_um: float, wavelength_um: float,
                       alpha_ml_per_g: float = DEFAULT_ALPHA_ML_PER_G) -> TimeLapseTables:
    """Track, measure and fit a time-lapse (see the module).

    Parameters
    ----------
    phase : numpy.ndarray
        ``(T, Y, X)`` phase, radians.
    nuclei, cells : numpy.ndarray
        ``(T, Y, X)`` integer instance labels per frame; cell k contains nucleus k.
    times_h : numpy.ndarray
        ``(T,)`` hours.
    pixel_size_um, wavelength_um : float
        µm per pixel and the illumination wavelength (µm).

    Raises
    ------
    ValueError
        Arrays of different shapes, or times not one per frame.
    """
    phase, nuclei, cells = np.asarray(phase, float), np.asarray(nuclei), np.asarray(cells)
    if not (phase.shape == nuclei.shape == cells.shape) or phase.ndim != 3:
        raise ValueError(f"phase {phase.shape}, nuclei {nuclei.shape} and cells {cells.shape} must be one (T, Y, X)")
    times = np.asarray(times_h, float)
    if times.shape != (phase.shape[0],):
        raise ValueError(f"{times.size} time(s) for {phase.shape[0]} frame(s)")
    tracks = track_labels(list(nuclei.astype(np.int32)))
    parents = {r.label: r.parent for r in tracks.records}
    cells_tracked = np.zeros_like(cells, dtype=np.int32)
    cell_rows, field_rows = [], []
    for t in range(phase.shape[0]):
        ids = _track_ids(nuclei[t], tracks.labels[t])
        lut = np.zeros(int(max(cells[t].max(), nuclei[t].max())) + 1, np.int32)
        for label, track in ids.items():
            lut[label] = track
        cells_tracked[t] = lut[cells[t]]
        result = compartment_dry_mass(phase[t], tracks.labels[t] > 0, cells_tracked[t], wavelength_um=wavelength_um,
                                      pixel_size_um=pixel_size_um, alpha_ml_per_g=alpha_ml_per_g)
        for row in result.rows:
            track = row.pop("label")
            cell_rows.append({"frame": t, "time_h": float(times[t]), "track_id": track,
                              "parent_id": parents.get(track, 0), **row})
        frame_rows = [r for r in cell_rows if r["frame"] == t]
        field_rows.append({"frame": t, "time_h": float(times[t]), "cell_count": len(frame_rows),
                           "confluence": result.confluence,
                           **{column: float(sum(r[column] for r in frame_rows)) for column in COMPARTMENTS.values()}})
    fits = [_growth_row("field", compartment, [r["time_h"] for r in field_rows], [r[column] for r in field_rows])
            for compartment, column in COMPARTMENTS.items()]
    for record in tracks.records:
        mine = [r for r in cell_rows if r["track_id"] == record.label]
        fits += [_growth_row(f"track {record.label}", compartment, [r["time_h"] for r in mine], [r[column] for r in mine])
                 for compartment, column in COMPARTMENTS.items()]
    growth = [row for row in fits if row is not None]
    return TimeLapseTables(cell_rows, field_rows, growth, tracks, cells_tracked)
