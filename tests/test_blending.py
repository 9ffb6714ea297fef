"""Alpha-blended stitching (VirFluoNet) next to exact tiling: what blending changes."""

import numpy as np
import pytest
import torch
from torch import nn

from virtualstain.inference.blending import predict_blended, ramp, window_starts
from virtualstain.inference.engines import TorchEngine
from virtualstain.inference.tiling import predict_padded
from virtualstain.models.configs import UNetConfig
from virtualstain.models.registry import build, make_config


def test_windows_cover_the_axis_on_the_grid_and_ramps_face_only_neighbours():
    starts = window_starts(200, 64, 16, 8)
    assert starts[0] == 0 and starts[-1] == 200 - 64 and all(s % 8 == 0 for s in starts)
    assert all(b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))  # neighbours share ≥ 16 px
    assert window_starts(48, 64, 16, 8) == [0]
    first, middle, last = ramp(200, 0, 64, 16), ramp(200, 48, 64, 16), ramp(200, 136, 64, 16)
    assert first[0] == 1 and first[-1] == pytest.approx(0.5 / 16) and middle[0] == middle[-1] == pytest.approx(0.5 / 16)
    assert last[-1] == 1 and np.all(middle[16:-16] == 1)


def test_blending_a_network_without_context_is_whole_image_prediction():
    """For the identity (receptive field of one pixel) the ramps are a partition of unity: blend == whole."""
    identity = nn.Identity()
    identity.config = UNetConfig(in_channels=2, out_channels=2, depth=2)  # size multiple 4
    image = np.random.default_rng(0).normal(size=(2, 96, 120)).astype(np.float32)
    blended = predict_blended(TorchEngine(identity, torch.device("cpu")), image, (32, 40), 12)
    assert np.abs(blended - image).max() < 1e-6


def test_blending_hides_seams_but_only_exact_tiling_equals_whole_image_prediction():
    torch.manual_seed(0)
    net = build("cgan", make_config("cgan", 1, 1, depth=3, base_width=4, max_width=16)).eval()
    image = np.random.default_rng(1).random((1, 128, 128)).astype(np.float32)
    engine = TorchEngine(net, torch.device("cpu"))
    whole = predict_padded(engine, image, None)
    exact = predict_padded(engine, image, (32, 32))
    blended = predict_blended(engine, image, (48, 48), 16)
    butted = predict_blended(engine, image, (32, 32), 0)  # windows side by side, no overlap: hard seams
    span = float(whole.max() - whole.min())
    assert np.abs(exact - whole).max() <= 1e-4 * span
    err_blend, err_butt = np.abs(blended - whole), np.abs(butted - whole)
    assert err_blend.max() > 10 * np.abs(exact - whole).max()  # windows miss context: not whole-image prediction
    assert err_blend.mean() < err_butt.mean()  # overlapping ramps lower the error that butted windows leave
    seam = err_butt[0][:, 30:34].mean()  # butted windows err most at their seams (x = 32), blending spreads it
    assert seam > 2 * err_butt[0][:, 12:20].mean() and err_blend[0][:, 30:34].mean() < seam


def test_predict_cli_option_blend(tmp_path, trained_run):
    from virtualstain.cli import main
    from virtualstain.data.io import read_image, write_tiff

    image = np.random.default_rng(2).random((1, 100, 90)).astype(np.float32) * 50
    write_tiff(tmp_path / "a.tif", image)
    model = str(trained_run.model_dir)
    assert main(["predict", model, str(tmp_path / "a.tif"), "--out", str(tmp_path / "e")]) == 0
    assert main(["predict", model, str(tmp_path / "a.tif"), "--out", str(tmp_path / "b"), "--stitch", "blend",
                 "--tile-size", "48", "--blend-overlap", "16"]) == 0
    exact, _ = read_image(tmp_path / "e" / "a.tif")
    blended, _ = read_image(tmp_path / "b" / "a.tif")
    assert blended.shape == exact.shape and not np.array_equal(blended, exact)
    # a blended output is not an exact one: predicting exactly into the same folder redoes it
    assert main(["predict", model, str(tmp_path / "a.tif"), "--out", str(tmp_path / "b")]) == 0
    redone, _ = read_image(tmp_path / "b" / "a.tif")
    np.testing.assert_array_equal(redone, exact)
    assert main(["predict", model, str(tmp_path / "a.tif"), "--out", str(tmp_path / "c"), "--stitch", "blend",
                 "--blend-overlap", "-1"]) == 2
