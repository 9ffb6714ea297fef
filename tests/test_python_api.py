"""The Python API with in-memory arrays, 3D end to end, and evaluation of folders."""

import numpy as np
import pytest

import virtualstain as vs
from virtualstain.data.io import write_tiff
from virtualstain.data.samples import samples_from_arrays
from virtualstain.data.synthetic import make_field
from virtualstain.training.config import config_from_dict


def test_train_and_predict_3d_from_arrays(tmp_path):
    fields = [make_field((8, 48, 48), seed=s) for s in range(3)]
    samples = samples_from_arrays([f.input for f in fields], [f.target[:1] for f in fields],
                                  splits=["train", "val", "test"], pixel_size_um=0.3)
    cfg = config_from_dict({
        "model": {"architecture": "unet", "spatial_dims": 3, "depth": 2, "base_width": 2, "downsample_z": False},
        "data": {"patch_size": [8, 32, 32], "target_channel_names": ["nuclei"]},
        "training": {"max_epochs": 2, "patches_per_epoch": 4, "batch_size": 2, "progress_bar": False},
    })
    result = vs.train(samples, tmp_path / "run", cfg)
    assert result.summary.split_mode == "explicit" and result.test_rows[0].image == "array2.tif"
    model = vs.load_model(result.model_dir)
    assert model.config.spatial_dims == 3 and model.config.size_multiple() == (1, 4, 4)
    volume = make_field((5, 37, 41), seed=9).input  # odd shape: padded and cropped back
    out = vs.predict(model, volume)
    assert out.shape == (1, 5, 37, 41) and out.dtype == np.float32
    tiled = vs.predict(model, volume, tile_size=16)
    assert np.abs(out - tiled).max() <= 1e-4 * (out.max() - out.min())
    # a one-channel 3D prediction is scored as one volume, not plane by plane
    write_tiff(tmp_path / "p.tif", out, channel_names=["nuclei"])
    write_tiff(tmp_path / "t.tif", out + 1.0)
    (row,) = vs.evaluate([tmp_path / "p.tif"], [tmp_path / "t.tif"]).rows
    assert row.pixels.pearson_r == pytest.approx(1.0)


def test_python_errors_are_user_errors():
    with pytest.raises(vs.UserError, match="1 input arrays but 2 target arrays"):
        samples_from_arrays([np.zeros((1, 8, 8))], [np.zeros((1, 8, 8)), np.zeros((1, 8, 8))])
    with pytest.raises(vs.UserError, match=r"input array0 has spatial shape \(8, 8\) but target array0 has \(8, 9\)"):
        samples_from_arrays([np.random.rand(1, 8, 8)], [np.random.rand(1, 8, 9)])


def test_evaluate_folders_by_name(tmp_path, rng):
    from scipy.stats import pearsonr

    (tmp_path / "pred").mkdir()
    (tmp_path / "true").mkdir()
    truth = {}
    for name in ("a.tif", "b.tif"):
        t = rng.normal(size=(1, 30, 30)).astype(np.float32)
        p = t + rng.normal(size=t.shape).astype(np.float32)
        write_tiff(tmp_path / "true" / name, t)
        write_tiff(tmp_path / "pred" / name, p, channel_names=["dna"])
        truth[name] = pearsonr(p.ravel(), t.ravel())[0]
    write_tiff(tmp_path / "const.tif", np.zeros((1, 30, 30)))
    rows = vs.evaluate([tmp_path / "pred"], [tmp_path / "true"], out=tmp_path / "ev").rows
    assert {r.image: r.pixels.pearson_r for r in rows} == pytest.approx(truth, abs=1e-6)
    assert rows[0].channel == "dna" and (tmp_path / "ev" / "metrics.csv").exists()
    (row,) = vs.evaluate([tmp_path / "pred" / "a.tif"], [tmp_path / "const.tif"]).rows
    assert np.isnan(row.pixels.pearson_r) and row.note.startswith("not defined: the target is constant; ")
    from skimage.metrics import structural_similarity

    a = rows[0].pixels
    from virtualstain.data.io import read_image
    pa, ta = read_image(tmp_path / "pred" / "a.tif")[0], read_image(tmp_path / "true" / "a.tif")[0]
    span = float(ta.max() - ta.min())
    assert a.data_range == pytest.approx(span)
    assert a.ssim == pytest.approx(structural_similarity(ta.astype(float), pa.astype(float), data_range=span), abs=1e-6)
    assert a.nrmse == pytest.approx(np.sqrt(np.mean((pa.astype(float) - ta) ** 2)) / span, rel=1e-6)
