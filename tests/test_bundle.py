"""Model bundles: safetensors + JSON, checksum, version; no pickle."""

import json
from pathlib import Path

import numpy as np
import pytest

from virtualstain.data.synthetic import make_field
from virtualstain.errors import UserError
from virtualstain.inference.predict import predict
from virtualstain.models.bundle import load_bundle, save_bundle
from virtualstain.models.bundle_meta import seal
from virtualstain.models.configs import SRCNNConfig, UNetConfig


def test_bundle_records_everything_and_reloads_identically(trained_run, rng):
    meta = json.loads((trained_run.model_dir / "model.json").read_text())
    for key in ("architecture", "network", "input_channel_names", "output_channel_names", "normalization",
                "pixel_size_um", "tiling_margin_px", "receptive_field_px", "package_version", "created",
                "weights_sha256", "validation", "training"):
        assert key in meta, key
    assert meta["training"]["manifest_sha256"] and meta["pixel_size_um"] == 0.5
    assert meta["output_channel_names"] == ["nuclei", "membrane"]
    assert sorted(p.name for p in trained_run.model_dir.iterdir()) == ["model.json", "weights.safetensors", "weights.sha256"]
    b1 = load_bundle(trained_run.model_dir)
    x = rng.normal(size=(1, 40, 40)).astype(np.float32)
    out_dir = trained_run.run_dir / "copy"
    save_bundle(b1, out_dir)
    b2 = load_bundle(out_dir)
    assert np.array_equal(predict(b1, x, tile_size=0), predict(b2, x, tile_size=0))


def test_tampered_weights_are_refused(trained_run, tmp_path):
    b = load_bundle(trained_run.model_dir)
    folder = save_bundle(b, tmp_path / "m")
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match model.json"):
        load_bundle(folder)


def test_newer_format_and_missing_bundle_are_refused(trained_run, tmp_path):
    folder = save_bundle(load_bundle(trained_run.model_dir), tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["format_version"] = 99
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="upgrade virtualstain"):
        load_bundle(folder)
    with pytest.raises(UserError, match="model not found"):
        load_bundle(tmp_path / "nothing")


FORMAT_1 = Path(__file__).parent / "data" / "bundles_format1"


@pytest.mark.parametrize("name, config_type, scale", [("pics", UNetConfig, 1), ("srcnn", SRCNNConfig, 2)])
def test_bundles_saved_in_format_1_load_predict_as_before_and_resave_in_format_2(name, config_type, scale, tmp_path):
    """Bundles written by virtualstain 0.1.0 (model.json format 1, the network under ``unet``; SRCNN marked by
    ``family``) load into their own configuration type and predict what that release predicted."""
    old = json.loads((FORMAT_1 / name / "model.json").read_text())
    assert old["format_version"] == 1 and "unet" in old and "network" not in old
    bundle = load_bundle(FORMAT_1 / name)
    assert isinstance(bundle.config, config_type) and bundle.config.scale == scale
    x = make_field((48, 40), seed=5, modality="phase", noise=0.0).input.astype(np.float32)  # as when saved
    expected = json.loads((FORMAT_1 / "expected.json").read_text())[name]  # that release's prediction of x
    out = predict(bundle, x, tile_size=0, border="none")  # 0.1.0 gave the network zeros beyond the image's edges
    assert list(out.shape) == expected["shape"] == [bundle.config.out_channels, 48 * scale, 40 * scale]
    tol = 1e-5 * expected["range"]
    (ys, xs) = np.array(expected["pixels_yx"]).T
    assert np.allclose(out[:, ys, xs], expected["values"], atol=tol)
    assert np.allclose(out.mean(axis=(1, 2)), expected["mean"], atol=tol)
    assert np.allclose(out.std(axis=(1, 2)), expected["std"], atol=tol)
    assert bundle.training.input_mean == old["training"]["input_mean"]
    folder = save_bundle(bundle, tmp_path / name)
    new = json.loads((folder / "model.json").read_text())
    assert new["format_version"] == 2 and "unet" not in new and new["network"]["family"] == config_type.family
    assert {k: new["training"][k] for k in old["training"]} == old["training"]  # nothing recorded is lost
    assert new["acquisition"] == old["acquisition"] and new["validation"] == old["validation"]
    assert np.array_equal(predict(load_bundle(folder), x, tile_size=0, border="none"), out)


def test_a_bundle_whose_network_config_is_damaged_is_refused(trained_run, tmp_path):
    folder = save_bundle(load_bundle(trained_run.model_dir), tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["network"]["family"] = "resnet"
    (folder / "model.json").write_text(json.dumps(seal(meta)))  # re-sealed: past the check of model.json's SHA-256
    with pytest.raises(UserError, match="network family 'resnet' is not known"):
        load_bundle(folder)
    del meta["network"]
    (folder / "model.json").write_text(json.dumps(seal(meta)))
    with pytest.raises(UserError, match="model.json: the network configuration is incomplete or unknown"):
        load_bundle(folder)
