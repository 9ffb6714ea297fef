"""``virtualstain phase …`` and ``virtualstain drymass`` end to end: metadata, tables, growth, bad input,
and the real holograms/interferograms/z-stack in ../shared/data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from virtualstain import optics
from virtualstain.cli import main
from virtualstain.data.io import read_image, write_labels, write_tiff
from virtualstain.data.phase_maps import write_phase_map


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def sphere_file(tmp_path, name="sphere.tif", wavelength_um=0.633, px=0.1):
    phase = optics.sphere_phase((128, 128), radius_um=5.0, delta_n=0.02, wavelength_um=wavelength_um,
                                pixel_size_um=px, supersample=4)
    return write_phase_map(tmp_path / name, phase, wavelength_um=wavelength_um, pixel_size_um=px, method="test"), phase


def test_phase_shifting_cli_writes_unwrapped_phase_with_metadata(tmp_path, capsys):
    yy, xx = np.indices((64, 64))
    truth = 6.0 * np.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / 200.0)  # > 2π: needs unwrapping
    frames = np.stack([1.0 + 0.5 * np.cos(truth - k * np.pi / 2) for k in range(4)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "frames.tif", frames)
    out = tmp_path / "phase.tif"
    assert main(["phase", "shifting", str(tmp_path / "frames.tif"), "--wavelength-um", "0.55", "--pixel-size-um", "0.2",
                 "--out", str(out)]) == 0
    phase, meta = read_image(out)
    offset = np.median(phase - truth)
    assert np.abs(phase - truth - offset).max() < 1e-4 and abs(offset / (2 * np.pi) - round(offset / (2 * np.pi))) < 1e-4
    assert meta.pixel_size_um == pytest.approx(0.2)
    assert meta.description["unit"] == "rad" and meta.description["wavelength_um"] == pytest.approx(0.55)
    assert main(["phase", "shifting", str(tmp_path / "frames.tif"), "--out", str(tmp_path / "x.tif"),
                 "--pixel-size-um", "0.2", "--wavelength-um", "633"]) == 2
    assert "lengths are in µm" in capsys.readouterr().err and not (tmp_path / "x.tif").exists()


def test_phase_tie_cli_recovers_the_phase_and_checks_its_arguments(tmp_path, capsys):
    n, px, lam = 128, 0.2, 0.5
    yy, xx = np.indices((n, n))
    truth = np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) * px * px / (2 * 2.0 ** 2))
    planes = np.abs(optics.propagate(np.exp(1j * truth), [-0.5, 0.0, 0.5], wavelength_um=lam, pixel_size_um=px)) ** 2
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, planes.astype(np.float32))
    for solver in ("fft", "dct", "iterative"):
        out = tmp_path / f"tie_{solver}.tif"
        assert main(["phase", "tie", str(stack), "--z-um", "-0.5,0,0.5", "--wavelength-um", str(lam),
                     "--pixel-size-um", str(px), "--solver", solver, "--out", str(out)]) == 0
        phase, meta = read_image(out)
        assert np.abs(phase - (truth - truth.mean())).max() < 2e-3, solver
        assert meta.description["method"] == f"TIE ({solver})"
    capsys.readouterr()
    assert main(["phase", "tie", str(stack), "--z-um", "-1,1", "--wavelength-um", "0.5", "--pixel-size-um", "0.2",
                 "--out", str(tmp_path / "bad.tif")]) == 2
    assert "3 planes but --z-um gives 2 positions" in capsys.readouterr().err
    assert main(["phase", "tie", str(stack), "--z-um", "-1,0,1", "--wavelength-um", "0.5",
                 "--out", str(tmp_path / "bad.tif")]) == 2
    assert "--pixel-size-um is required" in capsys.readouterr().err
    assert not (tmp_path / "bad.tif").exists()


def test_drymass_cli_sphere_labels_and_metadata(tmp_path, capsys):
    phase_path, phase = sphere_file(tmp_path)
    labels = tmp_path / "labels.tif"
    write_labels(labels, (phase > 0).astype(np.uint16))
    table = tmp_path / "mass.csv"
    assert main(["drymass", str(phase_path), "--labels", str(labels), "--out", str(table)]) == 0  # λ, px from the file
    rows = read_csv(table)
    assert len(rows) == 1 and float(rows[0]["dry_mass_pg"]) == pytest.approx(58.18, rel=1e-3)
    assert float(rows[0]["area_um2"]) == pytest.approx(np.pi * 25, rel=0.03)  # edge pixels count whole
    assert main(["drymass", str(phase_path), "--labels", str(labels), "--alpha", "0.2", "--out", str(table)]) == 0
    assert float(read_csv(table)[0]["dry_mass_pg"]) == pytest.approx(58.18 * 0.18 / 0.2, rel=1e-3)
    capsys.readouterr()
    assert main(["drymass", str(phase_path), "--labels", str(labels), "--wavelength-um", "0.55",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "records wavelength 0.633 µm but 0.55 µm was given" in capsys.readouterr().err
    write_labels(tmp_path / "small.tif", np.ones((10, 10), np.uint16))
    assert main(["drymass", str(phase_path), "--labels", str(tmp_path / "small.tif"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "small.tif: labels of shape (1, 10, 10) does not match" in capsys.readouterr().err
    write_tiff(tmp_path / "deg.tif", np.degrees(phase)[None] * 10, pixel_size_um=0.1)
    assert main(["drymass", str(tmp_path / "deg.tif"), "--labels", str(labels), "--wavelength-um", "0.633",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "not radians" in capsys.readouterr().err
    assert main(["drymass", str(phase_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "give either --labels, or both --nucleus-mask and --cell-mask" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_drymass_cli_compartments(tmp_path):
    px, lam = 0.5, 0.6
    phase = np.zeros((40, 60))
    phase[5:20, 5:30], phase[8:14, 10:20] = 1.0, 3.0  # cytoplasm 1 rad, nucleus 3 rad
    write_phase_map(tmp_path / "p.tif", phase, wavelength_um=lam, pixel_size_um=px, method="test")
    cells, nuclei = np.zeros((40, 60), np.uint16), np.zeros((40, 60), np.uint16)
    cells[5:20, 5:30], nuclei[8:14, 10:20] = 1, 1
    write_labels(tmp_path / "c.tif", cells)
    write_labels(tmp_path / "n.tif", nuclei)
    assert main(["drymass", str(tmp_path / "p.tif"), "--nucleus-mask", str(tmp_path / "n.tif"), "--cell-mask",
                 str(tmp_path / "c.tif"), "--out", str(tmp_path / "t.csv")]) == 0
    row = read_csv(tmp_path / "t.csv")[0]
    per_rad_um2 = lam / (2 * np.pi * 0.18)
    assert float(row["nucleus_dry_mass_pg"]) == pytest.approx(3 * 60 * px * px * per_rad_um2)
    assert float(row["cytoplasm_dry_mass_pg"]) == pytest.approx((15 * 25 - 60) * px * px * per_rad_um2)
    assert float(row["nc_mass_ratio"]) == pytest.approx(3 * 60 / (15 * 25 - 60))


def test_drymass_cli_time_lapse_gives_growth_curves_and_doubling_time(tmp_path, capsys):
    frames, doubling_h, interval = 6, 18.0, 2.0
    base = optics.sphere_phase((64, 64), radius_um=2.0, delta_n=0.03, wavelength_um=0.55, pixel_size_um=0.1)
    stack = np.stack([base * 2 ** (i * interval / doubling_h) for i in range(frames)])
    write_tiff(tmp_path / "tl.tif", stack[:, None], pixel_size_um=0.1,
               description={"unit": "rad", "wavelength_um": 0.55})
    tifffile.imwrite(tmp_path / "mask.tif", (base > 0).astype(np.uint8))
    table = tmp_path / "tl.csv"
    assert main(["drymass", str(tmp_path / "tl.tif"), "--labels", str(tmp_path / "mask.tif"), "--interval-h",
                 str(interval), "--out", str(table)]) == 0
    assert "field doubling time 18 h" in capsys.readouterr().out
    rows = read_csv(table)
    assert [int(r["frame"]) for r in rows] == list(range(frames))
    assert float(rows[3]["time_h"]) == 6.0
    growth = read_csv(tmp_path / "tl_growth.csv")
    assert {g["object"] for g in growth} == {"field", "1"}
    assert float(growth[0]["doubling_time_h"]) == pytest.approx(doubling_h, rel=1e-6)  # float32 phase maps
    assert (tmp_path / "tl_growth.png").stat().st_size > 1000


# --- real data ---------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_hl60_hologram_dry_mass_matches_provenance(data_dir, tmp_path):
    folder = data_dir / "qpi_hl60_hologram"
    meta = json.loads((folder / "meta.json").read_text())
    holo = np.load(folder / "hologram_cell.npz")
    tifffile.imwrite(tmp_path / "holo.tif", holo["data"])
    tifffile.imwrite(tmp_path / "bg.tif", holo["bg_data"])
    out = tmp_path / "phase.tif"
    assert main(["phase", "hologram", str(tmp_path / "holo.tif"), "--background", str(tmp_path / "bg.tif"),
                 "--wavelength-um", str(meta["wavelength_um"]), "--pixel-size-um", str(meta["pixel_size_um"]),
                 "--out", str(out)]) == 0
    phase, _ = read_image(out)
    assert -0.6 < phase.min() < -0.2 and 4.7 < phase.max() < 5.1  # PROVENANCE: about −0.4…5.0 rad
    fit = optics.fit_sphere(phase, wavelength_um=meta["wavelength_um"], pixel_size_um=meta["pixel_size_um"])
    disk = fit.disk(phase.shape, meta["pixel_size_um"], scale=1.2)
    write_labels(tmp_path / "disk.tif", disk.astype(np.uint16))
    for alpha, expected in ((0.18, 247.0), (0.20, 222.0)):
        table = tmp_path / f"mass_{alpha}.csv"
        assert main(["drymass", str(out), "--labels", str(tmp_path / "disk.tif"), "--alpha", str(alpha),
                     "--out", str(table)]) == 0
        assert float(read_csv(table)[0]["dry_mass_pg"]) == pytest.approx(expected, rel=0.01)


@pytest.mark.realdata
def test_qlsi_bead_phase_is_a_homogeneous_sphere(data_dir):
    import h5py

    folder = data_dir / "qpi_bead_qlsi"
    meta = json.loads((folder / "meta.json").read_text())
    with h5py.File(folder / "qlsi_paa_bead.h5", "r") as h5:
        data, reference = h5["0"][:], h5["reference"][:]
    lam, px = meta["wavelength_um"], meta["pixel_size_um"]
    phase = optics.qlsi_phase(data, reference, wavelength_um=lam, pitch_term_um=meta["qlsi_pitch_term_m"] * 1e6)
    fit = optics.fit_sphere(phase, wavelength_um=lam, pixel_size_um=px)
    assert fit.rms_rad < 0.03 * phase.max()  # the sphere model explains the map
    equivalent_radius = np.sqrt(np.count_nonzero(phase - fit.offset_rad > 0.1 * phase.max()) / np.pi) * px
    assert equivalent_radius == pytest.approx(fit.radius_um, rel=0.05)
    measured = optics.mask_dry_mass(phase - fit.offset_rad, fit.disk(phase.shape, px, 1.2), wavelength_um=lam,
                                    pixel_size_um=px)
    assert measured == pytest.approx(optics.sphere_dry_mass(fit.radius_um, fit.delta_n), rel=0.02)


@pytest.mark.realdata
def test_focus_on_the_sephace_brightfield_stack(data_dir):
    folder = data_dir / "sephace_set1"
    stack = tifffile.imread(folder / "brightfield_zstack.tif")
    z = [-24.65, -10.3, -0.65, 0.0, 9.75, 24.55]
    focus = z.index(0.0)
    assert abs(int(optics.select_focus_planes(stack, 1, measure="haar", mode="max")[0]) - focus) <= 1
    assert abs(int(optics.select_focus_planes(stack, 1, measure="normalized_variance", mode="min")[0]) - focus) <= 1
    # the fine detail peaks at focus while the overall bright-field contrast is lowest there
    assert int(optics.select_focus_planes(stack, 1, measure="normalized_variance", mode="max")[0]) in (0, 5)


def test_focus_cli_picks_and_writes_planes(tmp_path, capsys, rng):
    from scipy import ndimage

    sharp = rng.random((48, 48))
    stack = np.stack([ndimage.gaussian_filter(sharp, s) for s in (3.0, 1.0, 0.0, 2.0)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "z.tif", stack)
    out = tmp_path / "best.tif"
    assert main(["focus", str(tmp_path / "z.tif"), "--n", "2", "--out", str(out)]) == 0
    assert "most in focus: 2, 1" in capsys.readouterr().out
    written, meta = read_image(out)
    assert np.array_equal(written, stack[[2, 1]]) and meta.description["planes"] == [2, 1]
    assert main(["focus", str(tmp_path / "z.tif"), "--n", "9"]) == 2
    assert "the stack has 4 planes" in capsys.readouterr().err
