"""Super-resolution (DL-SRQPI) through the core workflow: k× pairs, networks, tiling, bundles, baselines."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch

from virtualstain import optics
from virtualstain.cli import main
from virtualstain.data.io import read_image, write_tiff
from virtualstain.data.patches import PatchSampler
from virtualstain.data.samples import read_manifest
from virtualstain.data.splits import Region
from virtualstain.errors import UserError
from virtualstain.inference.engines import TorchEngine
from virtualstain.inference.predict import predict
from virtualstain.inference.tiling import pad_to_multiple, predict_padded
from virtualstain.metrics import phase_scores
from virtualstain.models.bundle import load_bundle
from virtualstain.models.receptive_field import receptive_field_reach
from virtualstain.models.registry import build, make_config
from virtualstain.training.config import config_from_dict
from virtualstain.workflows.srqpi.evaluate import (
    BASELINES,
    TIE_REGULARIZATIONS,
    Optics,
    evaluate_srqpi,
    match_background,
    tie_baselines,
    upsample_bicubic,
)
from virtualstain.workflows.srqpi.simulate import SimulationSettings, simulate_pairs
from virtualstain.workflows.stain.predict import predict_files
from virtualstain.workflows.stain.train import train

K = 4


def _random_network(name: str):
    config = make_config(name, 1, 1, 2, scale=K, **({"depth": 2, "base_width": 4} if name == "sr_unet" else {}))
    network = build(name, config).eval()
    torch.manual_seed(0)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics, so folding and tiling are tested
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return network


@pytest.mark.parametrize("name", ["sr_unet", "srcnn"])
def test_super_resolution_networks_tile_exactly_and_reach_no_further_than_computed(name):
    network = _random_network(name)
    engine = TorchEngine(network, torch.device("cpu"))
    image = np.random.default_rng(0).normal(size=(1, 45, 37)).astype(np.float32)
    padded, _ = pad_to_multiple(image, network.config.size_multiple())
    whole = predict_padded(engine, padded, None)
    tiled = predict_padded(engine, padded, (8, 8))
    assert whole.shape == (1, K * padded.shape[1], K * padded.shape[2])
    assert np.abs(whole - tiled).max() < 1e-5
    # perturb one input pixel: only outputs within the computed reach (input px) may change
    bumped = padded.copy()
    bumped[0, 22, 18] += 10.0
    changed = np.argwhere(np.abs(predict_padded(engine, bumped, None) - whole)[0] > 1e-6)
    distance = np.abs(changed // K - np.array([22, 18])).max()
    reach = receptive_field_reach(network.config)
    assert changed.size and distance <= reach[0]


def _pair_files(tmp_path, scale_column: str | None):
    rng = np.random.default_rng(1)
    low = rng.uniform(0.5, 1.5, (1, 16, 12)).astype(np.float32)
    high = np.kron(low, np.ones((1, K, K), np.float32))
    high[:, :, : high.shape[2] // 2] = 0  # left half without content
    write_tiff(tmp_path / "lr.tif", low, pixel_size_um=2.6, description={"binning": K})
    write_tiff(tmp_path / "hr.tif", high, pixel_size_um=0.65)
    header = "input,target" + (",scale" if scale_column is not None else "")
    row = "lr.tif,hr.tif" + (f",{scale_column}" if scale_column is not None else "")
    (tmp_path / "m.csv").write_text(f"{header}\n{row}\n")
    return tmp_path / "m.csv"


def test_manifest_scale_pairs_lr_patches_with_the_hr_patches_of_the_same_field(tmp_path):
    (sample,) = read_manifest(_pair_files(tmp_path, "4"))
    assert sample.scale == K and sample.input.shape == (1, 16, 12) and sample.target.shape == (1, 64, 48)
    assert sample.acquisition.binning == K
    region = Region(0, "train", ((0, 16), (0, 12)))
    sampler = PatchSampler([sample.input], [sample.target], [region], (4, 4), min_signal_fraction=0.5, scale=K,
                           max_tries=200)
    rng = np.random.default_rng(0)
    for _ in range(30):
        x, y = sampler.sample(rng)  # flips and rotations applied to both
        assert y.shape == (1, 16, 16)
        assert (y > 0).mean() >= 0.5  # patches without content are dropped
        assert np.array_equal(y, np.kron(x, np.ones((1, K, K), np.float32)) * (y > 0))
    with pytest.raises(UserError, match=r"4× larger; for super-resolution add a column scale with 4"):
        read_manifest(_pair_files(tmp_path, None))
    with pytest.raises(UserError, match=r"× scale 3 = \(48, 36\) but target .* has \(64, 48\)"):
        read_manifest(_pair_files(tmp_path, "3"))
    with pytest.raises(UserError, match=r"scale '2.5' must be a whole number ≥ 1"):
        read_manifest(_pair_files(tmp_path, "2.5"))


@pytest.fixture(scope="module")
def tiny_sr_run(tmp_path_factory):
    """Pairs simulated from 4 synthetic fields, and a tiny sr_unet trained on them for 2 epochs."""
    folder = tmp_path_factory.mktemp("sr")
    settings = SimulationSettings(wavelength_um=0.55, pixel_size_um=0.65, na=0.25, defocus_um=[4.0, 6.0],
                                  coherence=[0.0])
    simulation = simulate_pairs([], folder / "sim", settings, synthetic=4, synthetic_shape=(128, 128))
    config = config_from_dict({"model": {"architecture": "sr_unet", "depth": 2, "base_width": 4},
                               "data": {"patch_size": [16, 16]},
                               "training": {"max_epochs": 2, "patches_per_epoch": 16, "batch_size": 4,
                                            "progress_bar": False}})
    result = train(simulation.manifest, folder / "run", config)
    return folder, simulation, result


def test_tiny_sr_model_trains_and_predicts_k_times_larger_with_shapes_and_pixel_sizes_recorded(tiny_sr_run):
    folder, simulation, result = tiny_sr_run
    with open(simulation.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["scale"] for r in rows} == {"4"} and {r["pixel_size_um"] for r in rows} == {"2.6"}
    meta = json.loads((result.model_dir / "model.json").read_text())
    assert meta["scale"] == K and meta["network"]["scale"] == K and meta["architecture"] == "sr_unet"
    assert meta["pixel_size_um"] == pytest.approx(2.6) and meta["output_pixel_size_um"] == pytest.approx(0.65)
    assert meta["acquisition"] == {"binning": 4, "wavelength_um": 0.55, "na": 0.25, "defocus_um": [4.0, 6.0],
                                   "coherence": 0.0, "noise": 0.01}
    assert meta["input_channel_names"] == ["brightfield"] and meta["output_channel_names"] == ["phase"]
    lr = folder / "sim" / rows[0]["input"]
    (out,) = predict_files(result.model_dir, [lr], folder / "pred", progress=False)
    phase, phase_meta = read_image(out)
    assert phase.shape == (128, 128) and phase_meta.pixel_size_um == pytest.approx(0.65)
    assert np.isfinite(phase).all()
    # brightness correction (C = R·S̄/R̄): a 3× brighter image gives the same phase once matched
    bundle = load_bundle(result.model_dir)
    low, _ = read_image(lr)
    means = bundle.training.input_mean
    assert len(means) == 1 and 0.9 < means[0] < 1.1  # an empty field is 1
    matched = predict(bundle, low[None], match_brightness=True)
    assert np.allclose(predict(bundle, 3 * low[None], match_brightness=True), matched, atol=1e-4)
    assert not np.allclose(predict(bundle, 3 * low[None]), matched, atol=1e-2)
    bundle.training.input_mean = []  # a model from before the mean was recorded
    with pytest.raises(UserError, match="the model records no training input mean .*; retrain it, or leave out "
                                        "--match-brightness"):
        predict(bundle, low[None], match_brightness=True, source="old")


def test_sr_model_refuses_other_binning_or_pixel_size_and_warns_outside_its_defocus_range(tiny_sr_run, capsys):
    folder, simulation, result = tiny_sr_run
    low, meta = read_image(folder / "sim" / "lr" / "synthetic0_000_z4_s0.tif")
    write_tiff(folder / "bin2.tif", low[None], pixel_size_um=2.6, description={**meta.description, "binning": 2})
    with pytest.raises(UserError, match=r"bin2.tif: the image was binned 2× but the model was trained on 4×-binned "
                                        r"images; use images binned 4× or a model trained for 2×"):
        predict_files(result.model_dir, [folder / "bin2.tif"], folder / "p1", progress=False)
    with pytest.raises(UserError, match=r"synthetic0_000_z4_s0.tif: pixel size 0.65 µm but the model was trained at "
                                        r"2.6 µm; rescale the image by 0.25 first, or retrain"):
        predict_files(result.model_dir, [folder / "sim" / "hr" / "synthetic0_000_z4_s0.tif"], folder / "p2",
                      progress=False)
    write_tiff(folder / "z12.tif", low[None], pixel_size_um=2.6, description={**meta.description, "defocus_um": 12.0})
    with pytest.warns(UserWarning, match=r"defocus_um 12 µm is outside the model's trained range 4…6 µm"):
        predict_files(result.model_dir, [folder / "z12.tif"], folder / "p3", progress=False)
    assert not list((folder / "p1").glob("*.tif")) and not list((folder / "p2").glob("*.tif"))  # nothing half-written
    # the command line shows it as one line, then predicts
    write_tiff(folder / "s03.tif", low[None], pixel_size_um=2.6, description={**meta.description, "coherence": 0.3})
    assert main(["predict", str(result.model_dir), str(folder / "s03.tif"), "--out", str(folder / "p4")]) == 0
    assert ("warning: " + str(folder / "s03.tif") + ": coherence 0.3 is outside the model's training value 0; "
            "expect lower accuracy") in capsys.readouterr().err


def test_evaluate_srqpi_scores_models_and_every_baseline(tiny_sr_run):
    folder, simulation, result = tiny_sr_run
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # simulated test pairs inside the trained range: no warning
        evaluation = evaluate_srqpi(simulation.manifest, {"tiny": load_bundle(result.model_dir)})
    assert {r.method for r in evaluation.rows} == {"tiny", *BASELINES}
    assert len(evaluation.rows) == 8 * (1 + len(BASELINES))
    by_z = evaluation.summary()["by_defocus_um"]
    assert set(by_z["tiny"]) == {"4", "6"} and -1 <= by_z["dct_tie"]["4"]["ssim"] <= 1


def test_tie_baselines_recover_a_well_sampled_phase_and_bicubic_upsampling_is_grid_aligned():
    n, px = 128, 0.65
    yy, xx = np.mgrid[:n, :n] * px
    truth = 1.5 * np.exp(-((yy - 40) ** 2 + (xx - 45) ** 2) / (2 * 6.0 ** 2))
    low = optics.brightfield_intensity(truth, z_um=1.0, wavelength_um=0.55, pixel_size_um=px, na_obj=0.25,
                                       coherence=0.0, padding="reflect")
    maps = tie_baselines(low, truth, Optics(defocus_um=1.0, coherence=0.0, binning=1, noise=0.0, na=0.25,
                                            wavelength_um=0.55, pixel_size_um=px))
    other = optics.brightfield_intensity(truth, z_um=-1.0, wavelength_um=0.55, pixel_size_um=px, na_obj=0.25,
                                         coherence=0.0, padding="reflect")  # the −z plane, noise-free
    for name in ("fft_tie", "dct_tie"):
        phase, eps = maps[name]
        scores = phase_scores(phase, truth)
        assert scores["ssim"] > 0.98 and scores["rmse_rad"] < 0.02, (name, scores)
        each = [phase_scores(match_background(optics.tie_phase(np.stack([other, low]), [-1.0, 1.0], wavelength_um=0.55,
                                                               pixel_size_um=px, solver=name[:3],
                                                               regularization_per_um2=e), truth), truth)["ssim"]
                for e in TIE_REGULARIZATIONS]
        assert scores["ssim"] == pytest.approx(max(each)) and eps == TIE_REGULARIZATIONS[int(np.argmax(each))]
    # k× area binning then upsampling returns a smooth image (a half-pixel shift would not)
    smooth = np.exp(-((yy - 40) ** 2 + (xx - 45) ** 2) / (2 * 8.0 ** 2))
    back = upsample_bicubic(optics.bin_pixels(smooth, K), K)
    assert np.abs(back - smooth).max() < 0.02
    assert np.abs(upsample_bicubic(optics.bin_pixels(smooth, K), K)[4:-4, 4:-4]
                  - np.roll(smooth, 2, axis=1)[4:-4, 4:-4]).max() > 0.02


def test_phase_scores_are_analytic_for_identity_and_scaling():
    truth = np.zeros((32, 32))
    truth[8:24, 8:24] = np.linspace(0.1, 2.0, 16)
    same = phase_scores(truth, truth)
    assert same["ssim"] == pytest.approx(1.0) and same["rmse_rad"] == 0 and same["total_phase_error"] == 0
    scaled = phase_scores(1.1 * truth, truth)
    assert scaled["total_phase_error"] == pytest.approx(0.1)
    assert scaled["rmse_rad"] == pytest.approx(0.1 * np.sqrt(np.mean(truth ** 2)))
    assert scaled["psnr_db"] == pytest.approx(10 * np.log10(2.0 ** 2 / scaled["rmse_rad"] ** 2))
    with pytest.raises(ValueError, match="the true phase map is constant"):
        phase_scores(truth, np.ones_like(truth))


def test_evaluate_sr_cli_refuses_bad_models_and_pairs_without_simulation_metadata(tiny_sr_run, tmp_path, capsys):
    folder, simulation, result = tiny_sr_run
    assert main(["evaluate-sr", str(simulation.manifest), "--model", str(result.model_dir),
                 "--out", str(tmp_path / "e1")]) == 2
    assert "write NAME=FOLDER, e.g. sr_unet=RUN/model" in capsys.readouterr().err
    low, _ = read_image(folder / "sim" / "lr" / "synthetic0_000_z4_s0.tif")
    write_tiff(tmp_path / "plain.tif", low[None], pixel_size_um=2.6)  # no simulation parameters
    (tmp_path / "m.csv").write_text(f"input,target,scale\nplain.tif,{folder / 'sim' / 'hr' / 'synthetic0_000_z4_s0.tif'},4\n")
    assert main(["evaluate-sr", str(tmp_path / "m.csv"), "--model", f"tiny={result.model_dir}",
                 "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "plain.tif: no ['defocus_um', 'coherence', 'binning', 'noise', 'na', 'wavelength_um'] in the image" in err
    assert not (tmp_path / "e2" / "metrics.csv").exists()
    assert main(["evaluate-sr", str(tmp_path / "m.csv"), "--model", f"tiny={result.model_dir}", "--no-baselines",
                 "--out", str(tmp_path / "e3")]) == 0  # a model alone needs no simulation parameters
    with open(tmp_path / "e3" / "metrics.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["method"] == "tiny" and -1 <= float(row["ssim"]) <= 1
