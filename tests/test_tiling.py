"""Tiled prediction equals whole-image prediction, for awkward shapes, 2D and 3D."""

import numpy as np
import pytest
import torch

from virtualstain.data.normalization import Normalizer
from virtualstain.errors import UserError
from virtualstain.inference.options import PredictOptions
from virtualstain.inference.predict import predict
from virtualstain.inference.tiling import auto_tile_size, count_tiles, mirror_margin, pad_to_multiple
from virtualstain.models.bundle import ModelBundle
from virtualstain.models.receptive_field import tiling_margin
from virtualstain.models.registry import build, make_config


def _bundle(spatial_dims, **kw):
    torch.manual_seed(0)
    cfg = make_config("pics", 1, 2, spatial_dims=spatial_dims, **kw)
    net = build("pics", cfg)
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    ident = Normalizer("zscore", [0.0], [1.0])
    return ModelBundle(net, "pics", ident, Normalizer("zscore", [10.0, 0.0], [2.0, 1.0]), ["in"], ["a", "b"])


def _check(bundle, image, tile):
    whole = predict(bundle, image, tile_size=0)
    tiled = predict(bundle, image, tile_size=tile)
    spatial = pad_to_multiple(image, bundle.config.size_multiple())[0].shape[1:]
    assert count_tiles(spatial, bundle.config, [10 ** 9] * (image.ndim - 3) + [tile, tile]) > 1
    assert whole.shape == (2, *image.shape[1:])
    span = whole.max() - whole.min()
    assert np.abs(tiled - whole).max() / span < 1e-4


def test_tiled_equals_whole_2d_awkward_shape(rng):
    bundle = _bundle(2, base_width=4)  # depth 4 as pics, narrow for CPU speed
    image = rng.normal(size=(1, 517, 731)).astype(np.float32)
    _check(bundle, image, 256)
    whole = predict(bundle, image, tile_size=0)
    budgeted = predict(bundle, image, memory_budget_mb=16)  # tiles chosen from a small memory budget
    assert np.abs(budgeted - whole).max() / (whole.max() - whole.min()) < 1e-4


def test_tiled_equals_whole_3d_awkward_shape(rng):
    bundle = _bundle(3, depth=3, base_width=2)
    image = rng.normal(size=(1, 13, 301, 257)).astype(np.float32)
    _check(bundle, image, 224)  # 2 × 2 windows of the mirrored 432 × 392 px (96 px cores: 25, 3× the work)


def test_output_is_in_target_units_and_shape_is_kept(rng):
    bundle = _bundle(2, depth=2, base_width=4)
    image = rng.normal(size=(1, 37, 53)).astype(np.float32)
    out = predict(bundle, image, tile_size=0, border="none")  # the network's own zero padding, as ``raw``
    raw = bundle.network(torch.from_numpy(pad_to_multiple(image, (4, 4))[0])[None]).detach().numpy()[0][:, :37, :53]
    assert np.allclose(out[0], raw[0] * 2.0 + 10.0, atol=1e-4)  # de-normalised: x·scale + offset


def test_tta_is_equivariant(rng):
    bundle = _bundle(2, depth=2, base_width=4)
    image = rng.normal(size=(1, 48, 40)).astype(np.float32)
    a = predict(bundle, image, tta=True, tile_size=0)
    b = predict(bundle, np.ascontiguousarray(np.rot90(image, 1, axes=(1, 2))), tta=True, tile_size=0)
    assert np.allclose(np.rot90(a, 1, axes=(1, 2)), b, atol=1e-4)


def test_auto_tiles_fit_the_budget_with_least_work():
    from virtualstain.inference.tiling import _axis_cost

    cfg = make_config("pics", 1, 1)
    per_px = cfg.bytes_per_pixel()
    assert auto_tile_size(cfg, 10 * 2048 ** 2 * per_px / 2 ** 20, (2048, 2048)) == (2048, 2048)  # fits whole
    budget_mb = 2048 * 1200 * per_px / 2 ** 20  # room for a 2048 × 1200 window, not for the whole image
    core = auto_tile_size(cfg, budget_mb, (2048, 2048))
    assert sorted(core) == [1024, 2048]  # one seam, not two: 2 × (2048 × 1136) px of work
    margin = tiling_margin(cfg)[0]  # 144: the exact reach 138 of the bilinear decoder, rounded up to 16
    work = _axis_cost(2048, core[0], 16, margin)[0] * _axis_cost(2048, core[1], 16, margin)[0]
    assert work == 2048 * 2 * (1024 + margin)
    for budget in (64, 256, 1024):  # every window fits; the search beats any square tiling that fits
        c = auto_tile_size(cfg, budget, (1536, 2048))
        sums = [_axis_cost(n, k, 16, margin) for n, k in zip((1536, 2048), c)]
        assert sums[0][1] * sums[1][1] * per_px <= budget * 2 ** 20
        for side in range(16, 2049, 16):
            sq = [_axis_cost(n, side, 16, margin) for n in (1536, 2048)]
            if sq[0][1] * sq[1][1] * per_px <= budget * 2 ** 20:
                assert sums[0][0] * sums[1][0] <= sq[0][0] * sq[1][0]


def test_one_options_object_carries_every_prediction_setting(rng):
    bundle = _bundle(2, depth=2, base_width=4)
    image = rng.normal(size=(1, 45, 38)).astype(np.float32)
    options = PredictOptions(tile_size=16, tta=True, border="none")  # no mirror: 9 tiles per view, not 49
    assert np.array_equal(predict(bundle, image, options), predict(bundle, image, tile_size=16, tta=True, border="none"))
    assert np.array_equal(predict(bundle, image, options, tta=False), predict(bundle, image, tile_size=16, border="none"))
    changed = options.replace(backend="auto")
    assert changed == PredictOptions(tile_size=16, tta=True, border="none", backend="auto") and options.backend == "torch"
    known = r"known: \['backend', 'blend_overlap', 'border', 'device'"
    with pytest.raises(TypeError, match=r"unknown prediction option\(s\) \['tiles'\]; " + known):
        predict(bundle, image, tiles=16)


def test_mirror_border_predicts_the_edges_as_the_centre_of_a_mirrored_larger_image(rng):
    bundle = _bundle(2, depth=2, base_width=4)
    margin = mirror_margin(bundle.config)
    assert margin == tiling_margin(bundle.config) == (32, 32)  # reach 30 < 64 px: the whole receptive field
    image = rng.normal(size=(1, 45, 38)).astype(np.float32)
    mirrored = predict(bundle, image, tile_size=0)  # border="mirror" by default
    big = np.pad(image, ((0, 0), (64, 64), (64, 64)), mode="reflect")  # a larger image, mirrored around this one
    centre = predict(bundle, big, tile_size=0, border="none")[:, 64:-64, 64:-64]
    zeros = predict(bundle, image, tile_size=0, border="none")
    span = centre.max() - centre.min()
    assert np.abs(mirrored - centre).max() < 1e-4 * span
    assert all(np.abs(zeros - mirrored)[edge].max() > 1e-4 * span  # every edge sees other content…
               for edge in ((slice(None), 0), (slice(None), -1), (Ellipsis, 0), (Ellipsis, -1)))
    inner = (slice(None), slice(30, -30), slice(30, -30))  # …pixels beyond the reach of every edge do not
    assert np.allclose(zeros[inner], mirrored[inner], atol=1e-5)
    with pytest.raises(UserError, match="--border 'reflect' must be one of"):
        PredictOptions(border="reflect")  # type: ignore[arg-type]


def test_mirror_margin_is_capped_and_tiled_still_equals_whole(rng):
    bundle = _bundle(2, base_width=4, upsampling="transposed")  # pics with the 0.1.0 decoder
    assert tiling_margin(bundle.config) == (112, 112) and mirror_margin(bundle.config) == (64, 64)
    image = rng.normal(size=(1, 77, 130)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"margins of \[112, 112\] px"):  # tiles far smaller than the reach
        _check(bundle, image, 32)
    assert mirror_margin(_bundle(3, depth=3, base_width=2).config) == (0, 64, 64)  # reach 66; no mirror in Z
