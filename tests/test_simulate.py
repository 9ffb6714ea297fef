"""`virtualstain simulate`: DL-SRQPI training pairs reproduce the optics module exactly."""

import csv
import json

import numpy as np
import pytest
import tifffile

from virtualstain import optics
from virtualstain.cli import main
from virtualstain.data.io import read_image, write_tiff
from virtualstain.data.phase_maps import write_phase_map
from virtualstain.errors import UserError
from virtualstain.workflows.srqpi.simulate import (
    SimulationSettings,
    parse_values,
    resampled_phase_map,
    simulate_intensity,
    synthetic_phase,
)


def _phase(n=64):
    return optics.sphere_phase((n, n), radius_um=3.0, delta_n=0.03, wavelength_um=0.55, pixel_size_um=0.2)


def test_simulated_intensity_is_the_optics_forward_model_binned():
    phase = _phase()
    settings = SimulationSettings(wavelength_um=0.55, pixel_size_um=0.2, na=0.4, noise=0.0, binning=4)
    low = simulate_intensity(phase, defocus_um=3.0, coherence=0.2, settings=settings, rng=np.random.default_rng(0))
    expected = optics.bin_pixels(optics.brightfield_intensity(phase, z_um=3.0, wavelength_um=0.55, pixel_size_um=0.2,
                                                              na_obj=0.4, coherence=0.2, padding="reflect"), 4)
    assert low.shape == (16, 16) and np.array_equal(low, expected)
    noisy = simulate_intensity(phase, defocus_um=3.0, coherence=0.2, rng=np.random.default_rng(0),
                               settings=SimulationSettings(wavelength_um=0.55, pixel_size_um=0.2, na=0.4, noise=0.05))
    assert np.std(noisy - low) == pytest.approx(0.05 / 4, rel=0.25)  # noise before binning: σ/k after


def test_parse_values_gives_single_values_and_ranges():
    assert parse_values("4", "--defocus-um", 1.0) == [4.0]
    assert parse_values("1:13", "--defocus-um", 1.0) == [float(z) for z in range(1, 14)]
    assert parse_values("0:0.4", "--coherence", 0.1) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert parse_values("2:4:0.5", "--defocus-um", 1.0) == [2.0, 2.5, 3.0, 3.5, 4.0]
    with pytest.raises(UserError, match="STOP ≥ START"):
        parse_values("4:1", "--defocus-um", 1.0)


def test_simulate_cli_writes_pairs_manifest_and_metadata(tmp_path, capsys):
    write_phase_map(tmp_path / "cell.tif", _phase(66), wavelength_um=0.55, pixel_size_um=0.2, method="test")
    out = tmp_path / "sim"
    assert main(["simulate", str(tmp_path / "cell.tif"), "--synthetic", "1", "--out", str(out), "--defocus-um", "1:2",
                 "--coherence", "0:0.1", "--wavelength-um", "0.55", "--pixel-size-um", "0.2", "--na", "0.4"]) == 0
    assert "8 pairs" in capsys.readouterr().out  # 2 phase maps × 2 z × 2 S
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["group"] for r in rows} == {"cell", "synthetic0_000"}
    assert all(float(r["pixel_size_um"]) == pytest.approx(0.8) and r["scale"] == "4" for r in rows)
    low, low_meta = read_image(out / rows[0]["input"])
    high, high_meta = read_image(out / rows[0]["target"])
    assert high.shape == (64, 64) and low.shape == (16, 16)  # 66 px cropped to a multiple of 4
    assert low_meta.pixel_size_um == pytest.approx(0.8) and high_meta.pixel_size_um == pytest.approx(0.2)
    assert low_meta.description["defocus_um"] == 1.0 and low_meta.description["binning"] == 4
    assert high_meta.description["unit"] == "rad"
    log = json.loads((out / "simulation.json").read_text())
    assert log["settings"]["na"] == 0.4 and len(log["pairs"]) == 8


def test_simulate_refuses_bad_settings_before_writing(tmp_path, capsys):
    base = ["--wavelength-um", "0.55", "--pixel-size-um", "0.2", "--out", str(tmp_path / "sim"), "--synthetic", "1"]
    assert main(["simulate", *base, "--na", "0.4", "--coherence", "1.5"]) == 2
    assert "S = NA_cond/NA_obj must be in [0, 1]" in capsys.readouterr().err
    assert main(["simulate", *base, "--na", "1.4"]) == 2
    assert "the objective NA must be in (0, 1.0]" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.float32) + np.arange(3)[:, None, None])
    assert main(["simulate", str(tmp_path / "stack.tif"), "--wavelength-um", "0.55", "--pixel-size-um", "0.2", "--na",
                 "0.4", "--out", str(tmp_path / "sim")]) == 2
    assert "the phase map must be one 2D image" in capsys.readouterr().err
    assert not (tmp_path / "sim").exists()


def test_phase_maps_are_resampled_to_the_simulation_pixel_size_and_synthetic_cells_differ_by_seed(tmp_path):
    phase = _phase(128)  # 0.2 µm pixels
    write_phase_map(tmp_path / "fine.tif", phase, wavelength_um=0.55, pixel_size_um=0.2, method="test")
    coarse = resampled_phase_map(tmp_path / "fine.tif", pixel_size_um=0.4)
    assert coarse.shape == (64, 64)
    # the integrated phase (a dry-mass proxy) is kept: Σφ·area
    assert coarse.sum() * 0.4 ** 2 == pytest.approx(phase.sum() * 0.2 ** 2, rel=1e-3)
    write_tiff(tmp_path / "deg.tif", phase[None], pixel_size_um=0.2, description={"unit": "deg"})
    with pytest.raises(UserError, match="the phase map is in 'deg'; give phase in radians"):
        resampled_phase_map(tmp_path / "deg.tif", 0.2)
    a, b = (SimulationSettings(wavelength_um=0.55, pixel_size_um=0.65, na=0.25, seed=seed) for seed in (0, 1))
    assert np.array_equal(synthetic_phase(3, a, (64, 64)), synthetic_phase(3, a, (64, 64)))
    assert not np.allclose(synthetic_phase(1, a, (64, 64)), synthetic_phase(0, b, (64, 64)))
    assert not np.allclose(synthetic_phase(0, a, (64, 64)), synthetic_phase(1, a, (64, 64)))


def test_synthetic_peak_phase_is_drawn_from_the_requested_range(tmp_path, capsys):
    settings = SimulationSettings(wavelength_um=0.55, pixel_size_um=0.65, na=0.25, synthetic_peak_rad=[3.0, 5.0])
    peaks = [synthetic_phase(i, settings, (64, 64)).max() for i in range(6)]
    assert all(3.0 <= p <= 5.0 for p in peaks) and len({round(p, 6) for p in peaks}) == 6
    plain = synthetic_phase(0, SimulationSettings(wavelength_um=0.55, pixel_size_um=0.65, na=0.25), (64, 64))
    scaled = synthetic_phase(0, settings, (64, 64))
    assert np.allclose(scaled / scaled.max(), plain / plain.max())  # the same cells, only scaled
    assert main(["simulate", "--synthetic", "1", "--synthetic-peak-rad", "5:3", "--wavelength-um", "0.55",
                 "--pixel-size-um", "0.65", "--na", "0.25", "--out", str(tmp_path / "sim")]) == 2
    assert "--synthetic-peak-rad [5.0, 3.0]: give LOW:HIGH with 0 < LOW ≤ HIGH (rad)" in capsys.readouterr().err
