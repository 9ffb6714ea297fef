"""Per-pixel uncertainty: the measures, the TTA spread, the calibration at training and the outputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from virtualstain.errors import UserError
from virtualstain.metrics.uncertainty import (
    NORMAL_1SIGMA,
    UncertaintyCalibration,
    calibration_factor,
    coverage,
    reliability,
    tile_means,
    tile_spearman,
)


def test_a_normal_error_with_its_true_sigma_is_calibrated(rng):
    sigma = rng.uniform(0.5, 2.0, (256, 256))
    errors = rng.normal(0, sigma)
    assert calibration_factor(errors, sigma) == pytest.approx(1.0, abs=0.02)
    assert calibration_factor(errors, sigma / 3) == pytest.approx(3.0, rel=0.02)
    assert coverage(errors, sigma, 1) == pytest.approx(NORMAL_1SIGMA, abs=0.01)
    assert coverage(errors, sigma, 2) == pytest.approx(0.9545, abs=0.01)
    mean_s, rms = reliability(errors, sigma)
    np.testing.assert_allclose(rms, mean_s, rtol=0.1)  # on the diagonal


def test_tile_spearman_is_scipy_on_tile_means(rng):
    sigma = np.kron(rng.uniform(0.1, 1, (4, 4)), np.ones((32, 32)))
    errors = rng.normal(0, sigma)
    expected = stats.spearmanr(tile_means(sigma), tile_means(np.abs(errors))).statistic
    assert tile_spearman([errors], [sigma]) == pytest.approx(expected)
    assert expected > 0.8
    assert tile_means(np.arange(64 * 64, dtype=float).reshape(64, 64)).shape == (4,)


def test_a_damaged_calibration_is_refused():
    with pytest.raises(ValueError, match="finite and positive"):
        UncertaintyCalibration.from_dict({"method": "tta", "channels": {"dapi": {"factor": -1.0}}})


def test_sigma_is_the_tta_spread_times_the_factor(trained_run):
    import dataclasses

    from virtualstain.inference.predict import predict, predict_with_uncertainty
    from virtualstain.inference.tiling import apply_transform, dihedral_transforms

    bundle = trained_run.bundle
    x = trained_run.held_out[0].input
    mean, sigma = predict_with_uncertainty(bundle, x)
    np.testing.assert_allclose(mean, predict(bundle, x, tta=True), rtol=1e-5, atol=1e-5)
    # independently: the 8 transformed inputs predicted one by one, their spread in target units, times the factor
    outs = [apply_transform(predict(bundle, np.ascontiguousarray(apply_transform(x, k, f))), k, f, inverse=True)
            for k, f in dihedral_transforms()]
    factors = np.asarray(bundle.uncertainty.factors(bundle.output_channel_names)).reshape(-1, 1, 1)
    np.testing.assert_allclose(sigma, np.std(outs, axis=0) * factors, rtol=1e-3, atol=1e-4)
    raw = dataclasses.replace(bundle, uncertainty=None)
    np.testing.assert_allclose(predict_with_uncertainty(raw, x)[1] * factors, sigma, rtol=1e-5, atol=1e-6)


def test_training_calibrates_on_validation_and_judges_on_test(trained_run):
    from virtualstain.models.bundle import load_bundle

    calibration = trained_run.bundle.uncertainty
    assert calibration is not None and calibration.method == "tta"
    assert calibration.calibrated_on == "1 validation region(s)" and calibration.judged_on == "1 test region(s)"
    channel = calibration.channels[trained_run.bundle.output_channel_names[0]]
    assert channel.factor > 0 and 0 <= channel.coverage_1sigma <= 1 and len(channel.reliability_sigma) == 10
    assert load_bundle(trained_run.model_dir).uncertainty.to_dict() == calibration.to_dict()
    report = (trained_run.run_dir / "test" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Uncertainty</h2>" in report and "reliability" in report


def test_predict_writes_sigma_and_the_ood_map(trained_run, tmp_path):
    import tifffile

    from virtualstain.data.io import read_image
    from virtualstain.workflows.stain.predict import predict_files

    source = sorted((trained_run.run_dir / "test" / "input").glob("*.tif"))[0]
    written = predict_files(trained_run.bundle, [source], tmp_path, uncertainty=True, ood_map=True)
    sigma, meta = read_image(tmp_path / f"{source.stem}_sigma.tif")
    prediction, pmeta = read_image(written[0])
    assert sigma.shape == prediction.shape and (sigma >= 0).all()
    assert meta.channel_names == [f"sigma_{n}" for n in trained_run.bundle.output_channel_names]
    assert pmeta.description["tta"] is True and 0 <= pmeta.description["ood_outside"] <= 1
    ood = tifffile.imread(tmp_path / f"{source.stem}_ood.tif")
    assert ood.shape[-2:] == prediction.shape[-2:] and np.isfinite(ood).all()
    again = predict_files(trained_run.bundle, [source], tmp_path, uncertainty=True, ood_map=True)
    assert again.skipped == [written[0]]
    (tmp_path / f"{source.stem}_ood.tif").unlink()
    redone = predict_files(trained_run.bundle, [source], tmp_path, uncertainty=True, ood_map=True)
    assert redone.redone == {written[0]: f"{source.stem}_ood.tif missing"}


def test_cli_predict_uncertainty_and_ood_map(trained_run, tmp_path, capsys):
    from virtualstain.cli import main

    source = sorted((trained_run.run_dir / "test" / "input").glob("*.tif"))[0]
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run.model_dir), str(source), "--out", str(out), "--uncertainty",
                 "--ood-map", "--backend", "torch"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([source.name, f"{source.stem}_sigma.tif",
                                                            f"{source.stem}_ood.tif"])
    assert main(["convert", str(source), "--out", str(tmp_path / "plate.zarr")]) == 0
    capsys.readouterr()
    assert main(["predict", str(trained_run.model_dir), str(tmp_path / "plate.zarr"), "--out",
                 str(tmp_path / "p.zarr"), "--uncertainty"]) == 2
    assert "--uncertainty and --ood-map write TIFFs beside each prediction" in capsys.readouterr().err


def test_an_ensemble_trains_saves_loads_and_adds_its_spread(tmp_path, synthetic_manifest, capsys):
    from conftest import tiny_config

    from virtualstain.cli import main
    from virtualstain.inference.predict import ensemble_views, predict_with_uncertainty
    from virtualstain.models.bundle import load_bundle

    config = tmp_path / "c.yaml"
    config.write_text(tiny_config().to_yaml(), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config), "--ensemble", "2"]) == 0
    assert "ensemble member 2 of 2 (seed 1)" in capsys.readouterr().out
    bundle = load_bundle(run / "model")
    assert len(bundle.members) == 1 and (run / "model" / "weights_member1.safetensors").is_file()
    first, second = bundle.network.state_dict(), bundle.members[0].state_dict()
    assert any(not np.allclose(first[k].numpy(), second[k].numpy()) for k in first if first[k].is_floating_point())
    assert bundle.uncertainty.method == "tta + ensemble of 2"
    import tifffile

    x = tifffile.imread(sorted((run / "test" / "input").glob("*.tif"))[0]).astype(np.float32)[None]
    mean, sigma = predict_with_uncertainty(bundle, x)
    # independently: each member's TTA mean and spread, combined by the law of total variance
    parts = [predict_with_uncertainty(dataclasses_replace(v, uncertainty=None), x) for v in ensemble_views(bundle)]
    means = np.array([p[0] for p in parts], np.float64)
    within = np.mean([p[1].astype(np.float64) ** 2 for p in parts], axis=0)
    factors = np.asarray(bundle.uncertainty.factors(bundle.output_channel_names)).reshape(-1, 1, 1)
    np.testing.assert_allclose(mean, means.mean(0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sigma, np.sqrt(within + means.var(0)) * factors, rtol=1e-4, atol=1e-3)
    # a rerun finds every member finished: nothing is trained again
    capsys.readouterr()
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config), "--ensemble", "2"]) == 0
    assert "ensemble member" not in capsys.readouterr().out
    member = run / "model" / "weights_member1.safetensors"
    member.write_bytes(member.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(UserError, match=r"weights_member1.safetensors: SHA-256 does not match model.json; the "
                                        r"weights are damaged or were replaced"):
        load_bundle(run / "model")


def dataclasses_replace(bundle, **changes):
    import dataclasses

    return dataclasses.replace(bundle, members=[], runners={}, _inference={}, **changes)
