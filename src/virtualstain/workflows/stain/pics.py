"""``virtualstain pics PHASE --nucleus-model M1 [--cell-model M2] --out OUT``: PICS end to end on a phase time-lapse.

From quantitative phase alone (radians; a ``(T, Y, X)`` TIFF or one position of an OME-Zarr plate), every frame:

1. the nucleus model predicts the nuclear stain and the cell model (when given) a cytoplasm or membrane stain, each
   after the frame is checked against its training domain (a warning when it is mostly unlike it);
2. nuclei are segmented in the virtual nuclear stain (``--segmenter``, default the learned segmenter), cells grown
   from them by a seeded watershed in the virtual cell stain (:func:`~virtualstain.analysis.segment_cells`), or in
   the phase itself without a cell model (cells are where the phase is raised);
3. the nuclei are tracked over the frames and cells take their nucleus's track
   (:mod:`~virtualstain.analysis.cell_time_lapse`).

``OUT`` receives ``cells.csv`` (per cell and frame: track and parent, nucleus and cytoplasm dry mass and area, N/C
ratio), ``fields.csv`` (per frame: cell count, confluence, total masses), ``growth.csv`` (exponential fits per
compartment of the field and of every track seen in ≥ 3 frames, doubling times with 95 % intervals),
``growth.png``, ``stains.tif`` (the virtual stains, T × C), ``nuclei.tif`` and ``cells.tif`` (tracked labels) and
``summary.html``.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, refuse_overwriting_inputs, write_csv_atomic, write_text_atomic
from ...analysis import segment_cells, segment_nuclei, segmentation_lengths
from ...analysis.cell_time_lapse import CELL_COLUMNS, FIELD_COLUMNS, GROWTH_COLUMNS, TimeLapseTables, measure_time_lapse
from ...data.io import write_labels, write_tiff
from ...data.phase_maps import read_phase_map
from ...data.units import check_wavelength_um
from ...errors import UserError
from ...inference.domain_check import check_domain, warn_if_unfamiliar
from ...inference.predict import predict
from ...models.bundle import ModelBundle, load_bundle
from .nuclei_segmenter import NUCLEI_METHODS, segment_nuclei_learned


@dataclass
class PicsResult:
    """What :func:`run_pics` measured and where it wrote it."""

    tables: TimeLapseTables
    out: Path
    frames: int


def read_phase_series(source: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """``(T, Y, X)`` phase (rad) and the pixel size (µm, None when unrecorded) of a TIFF or a plate position."""
    from ...data.ome_zarr import is_ome_zarr, read_position, split_position

    plate, position = split_position(source)
    if is_ome_zarr(plate):
        if position is None:
            raise UserError(f"{source}: give one position of the plate, e.g. {source}/A/1/0")
        image = read_position(plate, position)
        names = [n.lower() for n in image.channel_names]
        channel = names.index("phase") if "phase" in names else 0
        return image.array[:, channel, 0].astype(np.float32), image.pixel_size_um
    phase = read_phase_map(source, time_lapse=True)
    return phase.phase.astype(np.float32), phase.pixel_size_um


def _channel(bundle: ModelBundle, name: str | None, what: str) -> int:
    names = bundle.output_channel_names
    if name is None:
        return 0
    if name not in names:
        raise UserError(f"--{what}-channel {name!r}: the model predicts {', '.join(names)}; give one of them")
    return names.index(name)


def _nuclei(stain: np.ndarray, method: str, pixel_size_um: float | None) -> np.ndarray:
    if method == "learned":
        return segment_nuclei_learned(stain).labels
    if method == "cellpose":
        from .nuclei_segmenter import segment_nuclei_cellpose

        return segment_nuclei_cellpose(stain).labels
    return segment_nuclei(stain, **segmentation_lengths(stain, pixel_size_um).kwargs())


def run_pics(phase_source: str | os.PathLike, nucleus_model: ModelBundle | str | os.PathLike,
             out: str | os.PathLike, *, cell_model: ModelBundle | str | os.PathLike | None = None,
             nucleus_channel: str | None = None, cell_channel: str | None = None, cell_stain: str = "cytoplasm",
             wavelength_um: float, pixel_size_um: float | None = None, interval_h: float = 1.0,
             segmenter: str = "learned", log: Callable[[str], None] = lambda line: None) -> PicsResult:
    """Run the PICS chain on a phase time-lapse and write its tables, labels, plots and summary (see the module).

    Raises
    ------
    UserError
        Unreadable phase, a missing pixel size, an unknown channel or segmenter, a non-positive interval, an output
        folder that is the input.
    """
    if segmenter not in NUCLEI_METHODS:
        raise UserError(f"--segmenter {segmenter}: use {', '.join(NUCLEI_METHODS)}")
    if not interval_h > 0:
        raise UserError(f"--interval-h {interval_h} must be a positive number of hours between frames")
    if cell_stain not in ("cytoplasm", "membrane"):
        raise UserError(f"--cell-stain {cell_stain}: use cytoplasm or membrane")
    wavelength_um = check_wavelength_um(wavelength_um)
    folder = Path(out)
    refuse_overwriting_inputs([folder / n for n in ("cells.csv", "stains.tif", "nuclei.tif", "cells.tif")],
                              [Path(phase_source)])
    phase, file_px = read_phase_series(phase_source)
    px = pixel_size_um or file_px
    if not px:
        raise UserError(f"{phase_source}: records no pixel size; give --pixel-size-um (dry mass needs µm²)")
    nb = nucleus_model if isinstance(nucleus_model, ModelBundle) else load_bundle(nucleus_model)
    cb = cell_model if isinstance(cell_model, ModelBundle) or cell_model is None else load_bundle(cell_model)
    nc = _channel(nb, nucleus_channel, "nucleus")
    cc = _channel(cb, cell_channel, "cell") if cb is not None else 0
    folder = ensure_writable_dir(folder)
    stains, nuclei, cells = [], [], []
    for t, frame in enumerate(phase):
        source = f"{phase_source} t={t}"
        nuclear = predict(nb, frame[None], source=source, pixel_size_um=px)[nc]
        for bundle in (nb, cb) if cb is not None else (nb,):
            warn_if_unfamiliar(bundle, check_domain(bundle, frame[None], source=source, pixel_size_um=px), source)
        cell_stain_image = predict(cb, frame[None], source=source, pixel_size_um=px)[cc] if cb is not None else frame
        labels = _nuclei(nuclear, segmenter, px)
        segmented = segment_cells(cell_stain_image, labels, "cytoplasm" if cb is None else cell_stain,  # type: ignore[arg-type]
                                  pixel_size_um=px)
        stains.append(np.stack([nuclear] + ([cell_stain_image] if cb is not None else [])))
        nuclei.append(segmented.nuclei)
        cells.append(segmented.cells)
        log(f"frame {t + 1}/{len(phase)}: {segmented.count} cell(s)")
    times = np.arange(len(phase)) * float(interval_h)
    tables = measure_time_lapse(phase, np.asarray(nuclei), np.asarray(cells), times, pixel_size_um=px,
                                wavelength_um=wavelength_um)
    names = [nb.output_channel_names[nc]] + ([cb.output_channel_names[cc]] if cb is not None else [])
    write_tiff(folder / "stains.tif", np.asarray(stains, np.float32), pixel_size_um=px, channel_names=names,
               time_lapse=True)
    write_labels(folder / "nuclei.tif", tables.tracks.labels, pixel_size_um=px, time_lapse=True)
    write_labels(folder / "cells.tif", tables.cells_tracked, pixel_size_um=px, time_lapse=True)
    write_csv_atomic(folder / "cells.csv", tables.cells, CELL_COLUMNS)
    write_csv_atomic(folder / "fields.csv", tables.fields, FIELD_COLUMNS)
    write_csv_atomic(folder / "growth.csv", tables.growth, GROWTH_COLUMNS)
    figure = _growth_figure(tables)
    (folder / "growth.png").write_bytes(figure)
    write_text_atomic(folder / "summary.html", _summary_html(tables, str(phase_source), names, figure))
    return PicsResult(tables, folder, len(phase))


def _growth_figure(tables: TimeLapseTables) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["time_h"] for r in tables.fields]
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for column, label in (("nucleus_dry_mass_pg", "nuclei"), ("cytoplasm_dry_mass_pg", "cytoplasm"),
                          ("dry_mass_pg", "cells")):
        ax.plot(t, [r[column] for r in tables.fields], "o-", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time (h)", fontsize=8)
    ax.set_ylabel("field dry mass (pg)", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _summary_html(tables: TimeLapseTables, source: str, stains: list[str], figure: bytes) -> str:
    field = [r for r in tables.growth if r["object"] == "field"]
    rows = "".join(f"<tr><td>{r['compartment']}</td><td>{r['doubling_time_h']:.2f}</td>"
                   f"<td>{r['doubling_time_ci_low_h']:.2f} – {r['doubling_time_ci_high_h']:.2f}</td>"
                   f"<td>{r['r2']:.3f}</td></tr>" for r in field)
    first, last = tables.fields[0], tables.fields[-1]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>PICS {html.escape(source)}</title>'
            "</head><body>"
            f"<h1>PICS: {html.escape(source)}</h1><p>{len(tables.fields)} frame(s); virtual stains "
            f"{html.escape(', '.join(stains))}; {tables.tracks.n_tracks} track(s), "
            f"{len(tables.tracks.divisions)} division(s); cells {first['cell_count']} → {last['cell_count']}, "
            f"confluence {first['confluence']:.2f} → {last['confluence']:.2f}.</p>"
            "<h2>Field growth</h2><table><tr><th>compartment</th><th>doubling time (h)</th><th>95 % interval</th>"
            f"<th>r²</th></tr>{rows}</table>"
            f'<img alt="growth" src="data:image/png;base64,{base64.b64encode(figure).decode()}">'
            "<p>Per cell and frame: cells.csv; per frame: fields.csv; per track: growth.csv.</p></body></html>\n")
