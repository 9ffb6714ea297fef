"""PICS end to end: per-compartment growth over a time-lapse, from true labels and through the `pics` command."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from virtualstain.analysis.cell_time_lapse import measure_time_lapse
from virtualstain.data.synthetic import growth_time_lapse


def test_true_labels_recover_the_compartments_doubling_times():
    g = growth_time_lapse(shape=(128, 128), frames=6, interval_h=2.0, doubling_nucleus_h=20.0, doubling_cytoplasm_h=26.0)
    frames = len(g.times_h)
    tables = measure_time_lapse(g.phase, np.repeat(g.nuclei_labels[None], frames, 0),
                                np.repeat(g.cell_labels[None], frames, 0), g.times_h, pixel_size_um=0.5,
                                wavelength_um=0.55)
    assert tables.field_doubling_h("nucleus") == pytest.approx(20.0, rel=0.01)
    assert tables.field_doubling_h("cytoplasm") == pytest.approx(26.0, rel=0.01)
    n_cells = len(np.unique(g.nuclei_labels)) - 1
    assert tables.tracks.n_tracks == n_cells and all(r.parent == 0 for r in tables.tracks.records)
    assert len(tables.cells) == n_cells * frames and {r["frame"] for r in tables.cells} == set(range(frames))
    for row in tables.cells:  # cell mass is exactly nucleus + cytoplasm mass
        assert row["dry_mass_pg"] == pytest.approx(row["nucleus_dry_mass_pg"] + row["cytoplasm_dry_mass_pg"])
    first = tables.fields[0]
    assert first["cell_count"] == n_cells and 0 < first["confluence"] < 1


def test_the_pics_command_writes_every_table(trained_run, tmp_path, capsys):
    from virtualstain.cli import main
    from virtualstain.data.io import write_tiff

    g = growth_time_lapse(shape=(96, 96), frames=4, interval_h=1.5, seed=5)
    phase = write_tiff(tmp_path / "phase.tif", g.phase, pixel_size_um=0.5, description={"unit": "rad"})
    out = tmp_path / "pics"
    assert main(["pics", str(phase), "--nucleus-model", str(trained_run.model_dir), "--segmenter", "classical",
                 "--wavelength-um", "0.55", "--interval-h", "1.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "track(s) over 4 frame(s)" in printed
    for name in ("cells.csv", "fields.csv", "growth.csv", "growth.png", "stains.tif", "nuclei.tif", "cells.tif",
                 "summary.html"):
        assert (out / name).is_file(), name
    import tifffile

    with tifffile.TiffFile(out / "stains.tif") as tif:
        assert tif.series[0].get_axes(False)[:2] == "TC" and tif.series[0].get_shape(False)[:2] == (4, 1)
    with tifffile.TiffFile(out / "nuclei.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.series[0].dtype == np.uint16
    fields = list(csv.DictReader(open(out / "fields.csv", encoding="utf-8")))
    assert [float(r["time_h"]) for r in fields] == [0.0, 1.5, 3.0, 4.5]
    assert main(["pics", str(phase), "--nucleus-model", str(trained_run.model_dir), "--wavelength-um", "0.55",
                 "--interval-h", "0", "--out", str(out)]) == 2
    assert "--interval-h 0.0 must be a positive number of hours between frames" in capsys.readouterr().err
