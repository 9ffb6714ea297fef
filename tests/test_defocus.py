"""Fluorescence defocus: the incoherent PSF against the analytic OTF, and `virtualstain defocus-pairs`."""

import csv
import json

import numpy as np
import pytest

from virtualstain import optics
from virtualstain.cli import main
from virtualstain.data.io import read_image, write_tiff
from virtualstain.data.ranges import drop_inside, parse_interval, parse_values
from virtualstain.data.samples import read_manifest
from virtualstain.data.splits import plan_splits
from virtualstain.errors import UserError
from virtualstain.optics.propagation import spatial_frequencies
from virtualstain.workflows.focus.real_pairs import RealPair, write_real_pairs

OPTICS = {"pixel_size_um": 0.2, "wavelength_um": 0.5, "na": 0.8}


def _circular_otf(shape, pixel_size_um, wavelength_um, na):
    """Incoherent in-focus OTF of a circular pupil: (2/π)(acos ρ − ρ√(1−ρ²)), ρ = f / (2NA/λ)."""
    fy, fx = spatial_frequencies(shape, pixel_size_um)
    rho = np.sqrt(fy ** 2 + fx ** 2) / (2 * na / wavelength_um)
    r = np.clip(rho, 0.0, 1.0)
    return np.where(rho < 1, 2 / np.pi * (np.arccos(r) - r * np.sqrt(1 - r ** 2)), 0.0)


def _nuclei(shape=(64, 80), n=8, seed=0, radius_px=3.0):
    """Gaussian blobs on a dim background (an in-focus nuclear stain, in camera counts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.full(shape, 100.0)
    for _ in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        image += 1000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius_px ** 2))
    return image


def _high_frequency_energy(image, pixel_size_um, above):
    fy, fx = spatial_frequencies(image.shape, pixel_size_um)
    return float((np.abs(np.fft.fft2(image)) ** 2)[np.sqrt(fy ** 2 + fx ** 2) > above].sum())


# --- optics ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("z_um", [0.0, -3.0, 5.0])
@pytest.mark.parametrize("pixel_size_um", [0.05, 0.65])  # well sampled, and undersampled (BBBC006: 0.65 µm, NA 0.5)
def test_intensity_psf_sums_to_one(z_um, pixel_size_um):
    psf = optics.intensity_psf((64, 96), pixel_size_um=pixel_size_um, wavelength_um=0.46, na=0.5, z_um=z_um)
    assert psf.sum() == pytest.approx(1.0, abs=1e-12) and psf.min() >= 0


def test_in_focus_otf_is_the_autocorrelation_of_the_circular_pupil():
    shape, p, lam, na = (256, 256), 0.05, 0.5, 0.5  # pupil radius 12.8 frequency samples, no aliasing
    otf = np.fft.fft2(optics.intensity_psf(shape, pixel_size_um=p, wavelength_um=lam, na=na, z_um=0.0))
    assert np.abs(otf.imag).max() < 1e-12
    assert np.abs(otf.real - _circular_otf(shape, p, lam, na)).max() < 0.01  # the disc's pixelation


def test_at_focus_a_large_na_blurs_a_band_limited_image_by_its_otf_only():
    shape, p, lam, na, n = (128, 128), 0.1, 0.5, 1.2, 1.33  # water immersion; cut-off 2NA/λ = 4.8 cycles/µm
    yy, xx = np.mgrid[:128, :128]
    image = 2 + np.cos(2 * np.pi * xx / 128) + 0.5 * np.sin(2 * np.pi * 2 * yy / 128)  # 0.08, 0.16 cycles/µm
    out = optics.defocus_image(image, 0.0, pixel_size_um=p, wavelength_um=lam, na=na, medium_index=n, padding="none")
    assert np.abs(out - image).max() < 0.05 * np.abs(image - 2).max()  # close to identity …
    otf = _circular_otf(shape, p, lam, na)
    expected = 2 + otf[0, 1] * np.cos(2 * np.pi * xx / 128) + otf[2, 0] * 0.5 * np.sin(2 * np.pi * 2 * yy / 128)
    assert np.abs(out - expected).max() < 2e-3  # … and exactly the pupil autocorrelation at those frequencies


def test_psf_is_the_same_at_plus_and_minus_z():
    plus = optics.intensity_psf((96, 96), z_um=4.0, **OPTICS)
    minus = optics.intensity_psf((96, 96), z_um=-4.0, **OPTICS)
    assert np.abs(plus - minus).max() < 1e-12 * plus.max()
    assert np.abs(plus - np.roll(plus[::-1, ::-1], 1, axis=(0, 1))).max() < 1e-12 * plus.max()  # point-symmetric


def test_blur_preserves_total_intensity():
    image = _nuclei()
    for z in (2.0, 6.0):
        periodic = optics.defocus_image(image, z, padding="none", **OPTICS)
        assert periodic.sum() == pytest.approx(image.sum(), rel=1e-12)
        mirrored = optics.defocus_image(image, z, **OPTICS)
        assert mirrored.sum() == pytest.approx(image.sum(), rel=2e-3)  # light crosses the borders both ways


def test_mirror_padding_keeps_the_borders_bright():
    flat = np.full((48, 48), 5.0)
    assert np.allclose(optics.defocus_image(flat, 8.0, **OPTICS), 5.0, atol=1e-9)
    dark = optics.defocus_image(flat, 8.0, padding="zero", **OPTICS)
    assert dark[0, 0] < 0.5 * 5.0  # what the mirror avoids


def test_larger_defocus_leaves_less_high_frequency_energy():
    image = _nuclei(radius_px=2.0)
    energy = [_high_frequency_energy(optics.defocus_image(image, z, **OPTICS), 0.2, above=0.5) for z in (0, 1, 2, 4, 8)]
    assert all(a > b for a, b in zip(energy, energy[1:])), energy
    assert energy[-1] < 0.05 * energy[0]


def test_blur_radius_and_padding_follow_the_geometric_cone():
    assert optics.blur_radius_um(10.0, 0.6, 1.0) == pytest.approx(10 * 0.6 / 0.8)
    assert optics.blur_radius_um(-10.0, 0.6, 1.0) == optics.blur_radius_um(10.0, 0.6, 1.0)
    assert optics.blur_pad_px(12.0, pixel_size_um=0.65, wavelength_um=0.46, na=0.5) > 12 * 0.577 / 0.65


def test_a_measured_psf_is_clipped_and_normalised():
    kernel = optics.normalize_psf(np.array([[-1.0, 1.0], [2.0, 1.0]]))
    assert kernel.sum() == pytest.approx(1.0) and kernel.min() == 0.0
    with pytest.raises(ValueError, match="no positive pixels"):
        optics.normalize_psf(np.zeros((3, 3)))


# --- ranges ------------------------------------------------------------------------------------------------------

def test_z_range_and_exclusion_as_in_virfluonet():
    z = drop_inside(parse_values("-12:8", "--z-um", 1.0), parse_interval("-2:2", "--exclude-um"))
    assert z == [float(v) for v in range(-12, -2)] + [float(v) for v in range(3, 9)]  # closed interval: ±2 dropped
    assert drop_inside(parse_values("-4:4:2", "--z-um", 1.0), None) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    for bad in ("2:-2", "1", "a:b", "nan:1"):
        with pytest.raises(UserError, match=r"--exclude-um .*: give LOW:HIGH"):
            parse_interval(bad, "--exclude-um")


# --- the command ---------------------------------------------------------------------------------------------------

def _sources(folder, n=3, shape=(48, 64)):
    paths = []
    for i in range(n):
        path = folder / f"field{i}.tif"
        write_tiff(path, _nuclei(shape, seed=i)[None].astype(np.float32))
        paths.append(str(path))
    return paths


ARGS = ["--z-um", "-3:3", "--exclude-um", "-1:1", "--na", "0.8", "--wavelength-um", "0.5", "--pixel-size-um", "0.2"]


def test_cli_writes_pairs_that_read_manifest_accepts_with_one_group_per_source(tmp_path, capsys):
    out = tmp_path / "pairs"
    assert main(["defocus-pairs", *_sources(tmp_path, 4), *ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[4/4]" in printed and "16 pairs" in printed  # 4 images × z −3, −2, 2, 3
    samples = read_manifest(out / "manifest.csv")
    assert len(samples) == 16 and {s.group for s in samples} == {f"field{i}" for i in range(4)}
    assert all(s.pixel_size_um == pytest.approx(0.2) for s in samples)
    plan = plan_splits(samples)
    split_of_group: dict = {}
    for region in plan.regions:
        split_of_group.setdefault(samples[region.sample].group, set()).add(region.split)
    assert plan.mode == "groups" and all(len(s) == 1 for s in split_of_group.values())  # no field in two splits

    target, meta = read_image(out / "target" / "field0.tif")
    assert target.dtype == np.float32 and meta.pixel_size_um == pytest.approx(0.2)
    assert target.min() == 0.0 and target.max() == pytest.approx(1.0)  # (I − min) / (max − min)
    assert meta.description["source_min"] == pytest.approx(_nuclei(seed=0, shape=(48, 64)).min(), rel=1e-6)
    low, low_meta = read_image(out / "input" / "field0_z-3.tif")
    assert low_meta.description["defocus_um"] == -3.0 and low_meta.description["na"] == 0.8
    expected = optics.defocus_image(target.astype(float), -3.0, **OPTICS)  # --noise 0: no noise at all
    assert np.abs(low - expected).max() < 1e-6
    log = json.loads((out / "defocus_pairs.json").read_text())
    assert log["settings"]["exclude_um"] == [-1.0, 1.0] and len(log["pairs"]) == 16


def test_cli_resumes_and_refuses_other_settings(tmp_path, capsys):
    images, out = _sources(tmp_path, 1), tmp_path / "pairs"
    assert main(["defocus-pairs", *images, *ARGS, "--out", str(out), "--noise", "0.01", "--seed", "3"]) == 0
    first = read_image(out / "input" / "field0_z2.tif")[0]
    (out / "input" / "field0_z2.tif").unlink()
    capsys.readouterr()
    assert main(["defocus-pairs", *images, *ARGS, "--out", str(out), "--noise", "0.01", "--seed", "3"]) == 0
    assert "z = 2 µm: 1 pair(s) written" in (printed := capsys.readouterr().out) and "4 pairs (3 already there)" in printed
    assert np.array_equal(read_image(out / "input" / "field0_z2.tif")[0], first)  # same noise: seeded per pair
    assert main(["defocus-pairs", *images, *ARGS, "--out", str(out), "--noise", "0.02"]) == 2
    assert "made with other settings" in capsys.readouterr().err


def test_noise_is_sigma_of_the_normalised_range(tmp_path):
    out = tmp_path / "pairs"
    assert main(["defocus-pairs", *_sources(tmp_path, 1, shape=(96, 96)), "--z-um", "4", "--na", "0.8",
                 "--wavelength-um", "0.5", "--pixel-size-um", "0.2", "--noise", "0.05", "--out", str(out)]) == 0
    target = np.squeeze(read_image(out / "target" / "field0.tif")[0]).astype(float)
    noisy = np.squeeze(read_image(out / "input" / "field0_z4.tif")[0])
    assert np.std(noisy - optics.defocus_image(target, 4.0, **OPTICS)) == pytest.approx(0.05, rel=0.05)


def test_measured_psf_planes_are_labelled_by_z(tmp_path):
    yy, xx = np.mgrid[:9, :9]
    wide = np.exp(-((yy - 4) ** 2 + (xx - 4) ** 2) / 8.0)
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    write_tiff(tmp_path / "psf.tif", np.stack([delta, wide])[:, None].astype(np.float32))
    out = tmp_path / "pairs"
    assert main(["defocus-pairs", *_sources(tmp_path, 1), "--z-um", "0:5:5", "--pixel-size-um", "0.2",
                 "--psf", str(tmp_path / "psf.tif"), "--out", str(out)]) == 0
    target = np.squeeze(read_image(out / "target" / "field0.tif")[0]).astype(float)
    assert np.abs(np.squeeze(read_image(out / "input" / "field0_z0.tif")[0]) - target).max() < 1e-6  # a delta: unchanged
    blurred = optics.blur(target, wide / wide.sum())
    assert np.abs(np.squeeze(read_image(out / "input" / "field0_z5.tif")[0]) - blurred).max() < 1e-6
    assert main(["defocus-pairs", *_sources(tmp_path, 1), "--z-um", "0:10:5", "--pixel-size-um", "0.2",
                 "--psf", str(tmp_path / "psf.tif"), "--out", str(tmp_path / "other")]) == 2


def _error(capsys, *args) -> str:
    assert main(["defocus-pairs", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_bad_inputs_get_one_line_naming_the_file_or_option(tmp_path, capsys):
    good = _sources(tmp_path, 1)[0]
    out = str(tmp_path / "pairs")
    missing = tmp_path / "missing.tif"
    assert _error(capsys, str(missing), *ARGS, "--out", out) == f"error: {missing}: image not found; check the path"
    stack = tmp_path / "stack.tif"
    write_tiff(stack, np.random.default_rng(0).random((1, 3, 8, 8)).astype(np.float32))
    assert _error(capsys, str(stack), *ARGS, "--out", out) == (
        f"error: {stack}: a 3×8×8 image; defocus pairs are made from single in-focus planes (Y, X): save each "
        "channel or plane as its own file")
    nan = tmp_path / "nan.tif"
    write_tiff(nan, np.where(np.eye(8) > 0, np.nan, 1.0)[None].astype(np.float32))
    assert _error(capsys, str(nan), *ARGS, "--out", out) == (
        f"error: {nan}: 8 pixels are NaN or infinite; replace them (e.g. with the background value) before training "
        "or prediction")
    flat = tmp_path / "flat.tif"
    write_tiff(flat, np.full((1, 8, 8), 7.0, dtype=np.float32))
    assert _error(capsys, str(flat), *ARGS, "--out", out) == (
        f"error: {flat}: the image is constant (every pixel = 7.0); it carries no information — check the exposure "
        "and the channel")
    assert _error(capsys, good, *ARGS[:-6], "--na", "1.4", "--wavelength-um", "0.5", "--pixel-size-um", "0.2",
                  "--out", out) == ("error: --na 1.4: the objective NA must be above 0 and below the medium's "
                                    "refractive index 1.0 (set --medium-index: water 1.33, oil 1.515)")
    assert _error(capsys, good, "--z-um", "-2:2", "--exclude-um", "-2:2", *ARGS[4:], "--out", out) == (
        "error: --z-um -2,-1,0,1,2: every value lies inside --exclude-um -2:2; give z values outside it or a "
        "narrower --exclude-um")
    assert _error(capsys, good, "--z-um", "3", "--wavelength-um", "0.5", "--pixel-size-um", "0.2", "--out", out) == (
        "error: --na is required to compute the defocus PSF; add --na (or give a measured --psf)")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert _error(capsys, good, *ARGS, "--out", str(blocker / "pairs")) == (
        f"error: {blocker / 'pairs'}: cannot write to this output folder (Not a directory); choose another --out "
        "folder or fix its permissions")
    assert not (tmp_path / "pairs").exists()  # nothing written by any of them


def test_real_pairs_are_scaled_with_the_in_focus_range(tmp_path):
    sharp = _nuclei(seed=5)
    blurred = optics.defocus_image(sharp, 6.0, **OPTICS) + 3.0  # a brighter background out of focus
    write_tiff(tmp_path / "sharp.tif", sharp[None].astype(np.float32), pixel_size_um=0.2)
    write_tiff(tmp_path / "blurred.tif", blurred[None].astype(np.float32))
    manifest = write_real_pairs([RealPair(tmp_path / "blurred.tif", tmp_path / "sharp.tif", z_um=6.0)], tmp_path / "real")
    (sample,) = read_manifest(manifest)
    low, high = sharp.min(), sharp.max()
    assert np.allclose(sample.target[0], (sharp - low) / (high - low), atol=1e-6)
    assert np.allclose(sample.input[0], (blurred - low) / (high - low), atol=1e-6)
    assert sample.group == "sharp" and sample.pixel_size_um == pytest.approx(0.2)
    assert sample.acquisition.defocus_um == 6.0


@pytest.mark.realdata
def test_bbbc006_real_pair_manifest_loads(data_dir, tmp_path):
    focus = data_dir / "bbbc006_focus"
    if not focus.is_dir():
        pytest.skip(f"{focus} not found")
    pair = RealPair(next((focus / "defocused").glob("*_a01_s1_*.tif")), next((focus / "infocus").glob("*__a01__s1__*.tif")),
                    z_um=-32.0)
    (sample,) = read_manifest(write_real_pairs([pair], tmp_path / "real", pixel_size_um=0.65, channel_name="hoechst"))
    assert sample.input.shape == sample.target.shape == (1, 520, 696)
    assert sample.target.max() == pytest.approx(1.0) and sample.target_channel_names == ["hoechst"]
    with open(tmp_path / "real" / "manifest.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["group"] == "BBBC006_z_aligned__a01__s1__w1_10"
