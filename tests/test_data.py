"""Manifests, splits, normalisation, patches and the synthetic generator."""

import numpy as np
import pytest

from virtualstain.data.acquisition import Acquisition
from virtualstain.data.io import write_tiff
from virtualstain.data.normalization import Normalizer
from virtualstain.data.patches import PatchSampler, augment, fit_patch_size
from virtualstain.data.phase_maps import read_phase_map, write_phase_map
from virtualstain.data.samples import read_manifest, samples_from_arrays
from virtualstain.data.splits import plan_splits
from virtualstain.data.synthetic import make_field
from virtualstain.data.units import check_pixel_size_um, check_wavelength_um, length_key, length_unit
from virtualstain.errors import UserError


def _write_pair(folder, name, shape=(32, 40), n_in=1, rng=None, target_shape=None):
    rng = rng or np.random.default_rng(0)
    write_tiff(folder / f"{name}_in.tif", rng.normal(size=(n_in, *shape)))
    write_tiff(folder / f"{name}_a.tif", rng.normal(size=(1, *(target_shape or shape))))
    write_tiff(folder / f"{name}_b.tif", rng.normal(size=(1, *(target_shape or shape))))


def _manifest(folder, text):
    p = folder / "m.csv"
    p.write_text(text)
    return p


def test_manifest_stacks_targets_and_selects_channels(tmp_path):
    _write_pair(tmp_path, "f", n_in=4)
    m = _manifest(tmp_path, "input,target,input_channels,pixel_size_um\nf_in.tif,f_a.tif;f_b.tif,\"0,3\",0.5\n")
    (s,) = read_manifest(m)
    assert s.input.shape == (2, 32, 40) and s.target.shape == (2, 32, 40)
    assert s.pixel_size_um == 0.5
    from virtualstain.data.io import read_image
    full, _ = read_image(tmp_path / "f_in.tif")
    assert np.array_equal(s.input, full[[0, 3]])


def test_manifest_errors(tmp_path):
    _write_pair(tmp_path, "f", n_in=2)
    _write_pair(tmp_path, "g", target_shape=(30, 40))
    with pytest.raises(UserError, match=r"channels \[5\] requested but the file has 2"):
        read_manifest(_manifest(tmp_path, "input,target,input_channels\nf_in.tif,f_a.tif,5\n"))
    with pytest.raises(UserError, match=r"g_in.tif has spatial shape \(32, 40\) but target .*g_a.tif has \(30, 40\)"):
        read_manifest(_manifest(tmp_path, "input,target\ng_in.tif,g_a.tif\n"))
    with pytest.raises(UserError, match="the manifest has no rows"):
        read_manifest(_manifest(tmp_path, "input,target\n"))
    with pytest.raises(UserError, match="missing column 'target'"):
        read_manifest(_manifest(tmp_path, "input\nf_in.tif\n"))
    with pytest.raises(UserError, match=r"missing\.tif: file not found"):
        read_manifest(_manifest(tmp_path, "input,target\nmissing.tif,f_a.tif\n"))
    with pytest.raises(UserError, match="m.csv: manifest not found"):
        read_manifest(tmp_path / "none" / "m.csv")


def test_nan_and_constant_inputs_are_refused(tmp_path):
    a = np.ones((1, 16, 16), np.float32)
    write_tiff(tmp_path / "const.tif", a)
    a2 = np.random.default_rng(0).normal(size=(1, 16, 16))
    a2[0, 3, 3] = np.nan
    write_tiff(tmp_path / "nan.tif", a2)
    write_tiff(tmp_path / "t.tif", np.random.default_rng(1).normal(size=(1, 16, 16)))
    with pytest.raises(UserError, match=r"const.tif: the input image is constant \(every pixel = 1.0\)"):
        read_manifest(_manifest(tmp_path, "input,target\nconst.tif,t.tif\n"))
    with pytest.raises(UserError, match=r"nan.tif: 1 pixels are NaN or infinite"):
        read_manifest(_manifest(tmp_path, "input,target\nnan.tif,t.tif\n"))
    a2[0, 3, 3], a2[0, 5, 5] = np.inf, -np.inf
    write_tiff(tmp_path / "inf.tif", a2)
    with pytest.raises(UserError, match=r"inf.tif: 2 pixels are NaN or infinite"):
        read_manifest(_manifest(tmp_path, "input,target\nt.tif,inf.tif\n"))


def test_explicit_splits_need_training_rows(tmp_path):
    _write_pair(tmp_path, "f")
    with pytest.raises(UserError, match=r"no training rows \(split=train\)"):
        plan_splits(read_manifest(_manifest(tmp_path, "input,target,split\nf_in.tif,f_a.tif,test\n")))


def test_single_field_is_split_spatially_left_to_right_without_overlap():
    x = np.random.default_rng(0).normal(size=(1, 100, 100)).astype(np.float32)
    plan = plan_splits(samples_from_arrays([x], [x.copy()]), val_fraction=0.15, test_fraction=0.25)
    assert plan.mode == "spatial"
    bounds = {r.split: r.bounds for r in plan.regions}
    assert bounds["train"] == ((0, 100), (0, 60))
    assert bounds["val"] == ((0, 100), (60, 75))
    assert bounds["test"] == ((0, 100), (75, 100))


def test_groups_never_straddle_splits():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(1, 16, 16)).astype(np.float32) for _ in range(12)]
    groups = [f"well{i // 3}" for i in range(12)]
    samples = samples_from_arrays(xs, xs, groups=groups)
    plan = plan_splits(samples, 0.25, 0.25, seed=5)
    assert plan.mode == "groups"
    split_of_group = {}
    for r in plan.regions:
        split_of_group.setdefault(samples[r.sample].group, set()).add(r.split)
    assert all(len(v) == 1 for v in split_of_group.values())
    assert {next(iter(v)) for v in split_of_group.values()} == {"train", "val", "test"}


def test_normalizers_match_their_formulas(rng):
    a = rng.gamma(2.0, 100.0, size=(2, 50, 60)).astype(np.float32)
    p = Normalizer.fit([a], "percentile", (1.0, 99.8))
    lo, hi = np.percentile(a[1].astype(np.float64), (1.0, 99.8))
    assert np.allclose(p(a)[1], (a[1] - lo) / (hi - lo), atol=1e-5)
    z = Normalizer.fit([a], "zscore")
    assert abs(z(a)[0].mean()) < 1e-4 and z(a)[0].std() == pytest.approx(1, abs=1e-4)
    mm = Normalizer.fit([a[:, :25]], "minmax")
    out = mm(a)
    expected = np.clip((a[0] - a[0, :25].min()) / (a[0, :25].max() - a[0, :25].min()), 0, 1)  # PICS eq. 1
    assert np.allclose(out[0], expected, atol=1e-6) and out.max() <= 1 and out.min() >= 0
    for n in (p, z):
        assert np.allclose(n.inverse(n(a)), a, rtol=1e-5, atol=1e-2)
        assert Normalizer.from_dict(n.to_dict()) == n
    with pytest.raises(UserError, match="channel 0 of the training images has no contrast"):
        Normalizer.fit([np.ones((1, 8, 8), np.float32)])


def test_patches_stay_inside_training_regions_and_respect_filter():
    h, w = 64, 100
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    coords = np.stack([yy, xx])  # each pixel holds its own coordinates
    target = np.zeros((1, h, w), np.float32)
    target[0, 10:20, 10:20] = 1.0  # signal only in one corner of the training region
    samples = samples_from_arrays([coords], [target + 0.01 * coords[1:]])
    plan = plan_splits(samples)
    train = plan.of("train")
    patch = fit_patch_size((32, 32), train, (16, 16))
    sampler = PatchSampler([coords], [target], train, patch, min_signal_fraction=0.05, augment=False)
    rng = np.random.default_rng(0)
    limit = train[0].bounds[1][1]
    for _ in range(50):
        x, y = sampler.sample(rng)
        assert x.shape == (2, 32, 32)
        assert x[1].max() < limit  # never touches validation/test columns
        assert (y > 0.5).mean() >= 0.05  # the filter found signal
    a, b = sampler.sample(np.random.default_rng(7)), sampler.sample(np.random.default_rng(7))
    assert np.array_equal(a[0], b[0])


def test_augmentation_transforms_input_and_target_alike(rng):
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    for seed in range(8):
        xa, ya = augment(x, x.copy(), np.random.default_rng(seed))
        assert np.array_equal(xa, ya)
        assert np.allclose(np.sort(xa[:, 0].ravel()), np.sort(x[:, 0].ravel()))  # XY only: planes stay planes
        assert np.allclose(np.sort(xa.ravel()), np.sort(x.ravel()))


def test_synthetic_generator_is_deterministic_and_paired():
    a, b, c = make_field((96, 96), seed=4), make_field((96, 96), seed=4), make_field((96, 96), seed=5)
    assert np.array_equal(a.input, b.input) and np.array_equal(a.target, b.target)
    assert not np.array_equal(a.input, c.input)
    assert a.input.shape == (1, 96, 96) and a.target.shape == (2, 96, 96)
    inside = a.nuclei_labels > 0
    assert a.target[0][inside].mean() > 3 * a.target[0][~inside].mean()  # nuclei stain lights up nuclei
    bf = make_field((48, 64), seed=1, modality="brightfield")
    assert bf.input.shape == (1, 48, 64) and bf.target.shape == (2, 48, 64) and bf.phase.shape == (48, 64)
    assert np.array_equal(bf.phase, make_field((48, 64), seed=1).phase)  # the same object, seen two ways
    with pytest.raises(ValueError, match="bright-field input is 2D"):
        make_field((8, 48, 48), seed=1, modality="brightfield")


def test_acquisition_is_read_from_metadata_pooled_over_images_and_written_back():
    one = Acquisition.from_description({"binning": 4, "defocus_um": 5.0, "wavelength_um": 0.55, "noise": "high",
                                        "quantity": "intensity"})
    assert one == Acquisition(binning=4, defocus_um=5.0, wavelength_um=0.55)  # non-numbers and other keys are ignored
    other = Acquisition(binning=4, defocus_um=1.0, wavelength_um=0.55, na=0.25)
    pooled = Acquisition.pooled([one, other])
    assert pooled == Acquisition(binning=4, defocus_um=(1.0, 5.0), wavelength_um=0.55)  # na: not known for both
    assert pooled.to_dict() == {"defocus_um": [1.0, 5.0], "binning": 4, "wavelength_um": 0.55}
    assert Acquisition.from_description(pooled.to_dict()) == pooled  # as a bundle stores and reloads it
    assert pooled.missing(["binning", "na"]) == ["na"]


def test_acquisition_check_refuses_another_binning_or_wavelength_and_warns_outside_the_defocus_range():
    trained = Acquisition(binning=4, defocus_um=(1.0, 5.0), wavelength_um=0.55)
    trained.check_image(Acquisition(binning=4, defocus_um=3.0, wavelength_um=0.58), "ok.tif")  # within 10 %
    with pytest.raises(UserError, match=r"x.tif: the image was binned 2× but the model was trained on 4×-binned"):
        trained.check_image(Acquisition(binning=2), "x.tif")
    with pytest.raises(UserError, match=r"x.tif: wavelength 0.65 µm but the model was trained at 0.55 µm"):
        trained.check_image(Acquisition(wavelength_um=0.65), "x.tif")
    with pytest.warns(UserWarning, match=r"x.tif: defocus_um 7 µm is outside the model's trained range 1…5 µm"):
        trained.check_image(Acquisition(defocus_um=7.0), "x.tif")


def test_lengths_are_checked_in_um_and_keys_follow_the_unit():
    assert check_wavelength_um(0.633) == 0.633
    with pytest.raises(UserError, match=r"--wavelength-um 633 is outside the plausible range 0.2–2.0 µm"):
        check_wavelength_um(633)
    with pytest.raises(UserError, match=r"--pixel-size-um is required \(µm\)"):
        check_pixel_size_um(None)
    assert check_pixel_size_um(None, required=False) is None
    assert length_key("displacement_median", 0.5) == "displacement_median_um"
    assert length_key("displacement_median", None) == "displacement_median_px"
    assert length_key("area_target_median", None, 2) == "area_target_median_px2"
    assert (length_unit(0.5), length_unit(None)) == ("µm", "px")


def test_one_phase_map_reader_for_single_maps_and_time_lapses(tmp_path):
    phase = np.linspace(0, 2, 12 * 10).reshape(12, 10)
    write_phase_map(tmp_path / "p.tif", phase, wavelength_um=0.55, pixel_size_um=0.2, method="test")
    read = read_phase_map(tmp_path / "p.tif")
    assert read.phase.shape == (1, 12, 10) and np.allclose(read.phase[0], phase, atol=1e-6)
    assert (read.wavelength_um, read.pixel_size_um, read.description["unit"]) == (0.55, pytest.approx(0.2), "rad")
    write_tiff(tmp_path / "t.tif", np.stack([phase, phase])[:, None], description={"unit": "rad"})
    assert read_phase_map(tmp_path / "t.tif", time_lapse=True).phase.shape == (2, 12, 10)
    with pytest.raises(UserError, match=r"t.tif: the phase map must be one 2D image, got shape \(2, 12, 10\)"):
        read_phase_map(tmp_path / "t.tif")
    write_tiff(tmp_path / "nm.tif", 300 * phase[None], description={"unit": "nm"})
    with pytest.raises(UserError, match=r"nm.tif: the phase map is in 'nm'; give phase in radians"):
        read_phase_map(tmp_path / "nm.tif")
    write_tiff(tmp_path / "deg.tif", 90 * phase[None])
    with pytest.raises(UserError, match=r"deg.tif: \|phase\| reaches 180, which is not radians of a cell"):
        read_phase_map(tmp_path / "deg.tif")
