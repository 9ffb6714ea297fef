"""Model bundles: safetensors + JSON, checksum, version; no pickle."""

import json

import numpy as np
import pytest

from virtualstain.errors import UserError
from virtualstain.inference.predict import predict
from virtualstain.models.bundle import load_bundle, save_bundle


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
