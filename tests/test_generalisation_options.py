"""Options for models that hold on new fields of view: intensity augmentation of the input, per-image input
normalisation, the L1 + MS-SSIM loss and foreground-weighted pixel losses (all off by default)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity
from torch.nn import functional as F

from virtualstain.data.augmentation import IntensityAugmentation
from virtualstain.data.normalization import Normalizer
from virtualstain.data.patches import PatchSampler
from virtualstain.data.splits import Region
from virtualstain.errors import UserError
from virtualstain.inference.predict import predict
from virtualstain.inference.tiling import count_tiles, pad_to_multiple
from virtualstain.models.bundle import ModelBundle, load_bundle, save_bundle
from virtualstain.models.registry import build, make_config
from virtualstain.training.config import DataSettings, TrainingSettings
from virtualstain.training.losses import LOSSES, MSSSIM_ALPHA, WANG_BETAS, make_loss, ms_ssim

OFF = {f"{name}_probability": 0.0 for name in ("gain", "offset", "gamma", "blur", "noise")}


def _only(name: str, **ranges) -> IntensityAugmentation:
    """An augmentation that always applies ``name`` (with the given ranges) and nothing else."""
    return IntensityAugmentation(**{**OFF, f"{name}_probability": 1.0}, **ranges)


# --- defaults: everything off but intensity augmentation on small training areas -------------------------------

def test_the_options_are_off_by_default():
    data, training = DataSettings(), TrainingSettings()
    assert data.intensity_augmentation == "auto" and data.input_normalization_scope == "dataset"
    assert training.foreground_weight == 0.0 and training.loss == "mse"
    assert TrainingSettings(loss="mae_msssim", foreground_weight=2.0).foreground_weight == 2.0
    with pytest.raises(ValueError):
        TrainingSettings(foreground_weight=-1.0)


def test_intensity_augmentation_auto_follows_the_training_area():
    from virtualstain.training.auto import SMALL_TRAINING_PATCHES, choose_intensity_augmentation

    patch = 128 * 128
    small = choose_intensity_augmentation("auto", (SMALL_TRAINING_PATCHES - 1) * patch, patch)
    large = choose_intensity_augmentation("auto", SMALL_TRAINING_PATCHES * patch, patch)
    assert (small.value, large.value) == ("on", "off")
    assert small.line() == (f"data.intensity_augmentation = on: the training area holds {SMALL_TRAINING_PATCHES - 1} "
                            f"patches, fewer than {SMALL_TRAINING_PATCHES}: a small set, whose grey levels a network "
                            "learns by heart")
    assert choose_intensity_augmentation(False, 1, patch).value == "off"  # what the config says wins
    assert choose_intensity_augmentation(True, 10 ** 9, patch).value == "on"


# --- intensity augmentation -----------------------------------------------------------------------------------

def _sampler(rng, intensity=None, shape=(64, 80), channels=2):
    x = rng.normal(size=(channels, *shape)).astype(np.float32)
    y = rng.normal(size=(1, *shape)).astype(np.float32)
    region = Region(0, "train", tuple((0, n) for n in shape))
    patch = (32, 32) if len(shape) == 2 else (8, 32, 32)
    return PatchSampler([x], [y], [region], patch, intensity_augmentation=intensity)


@pytest.mark.parametrize("shape", [(64, 80), (12, 64, 80)], ids=["2d", "3d"])
def test_augmentation_is_deterministic_by_seed_and_leaves_the_target_alone(rng, shape):
    plain = _sampler(np.random.default_rng(0), shape=shape)
    augmented = _sampler(np.random.default_rng(0), IntensityAugmentation(), shape=shape)
    changed = 0
    for seed in range(8):
        x0, y0 = plain.sample(np.random.default_rng(seed))
        x1, y1 = augmented.sample(np.random.default_rng(seed))
        x2, y2 = augmented.sample(np.random.default_rng(seed))
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)  # same seed, same patch
        assert np.array_equal(y0, y1)  # the target is untouched (and drawn from the same place)
        assert x1.dtype == np.float32 and x1.shape == x0.shape == (2, *plain.patch_size)
        changed += not np.array_equal(x0, x1)
    assert changed >= 4


def test_augmentation_draws_nothing_when_off(rng):
    """None keeps the sampler's random stream; probabilities 0 change nothing."""
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    sampler = _sampler(rng)
    sampler.sample(a)
    assert a.random() == (sampler.sample(b), b.random())[1]
    x = rng.normal(size=(2, 16, 16)).astype(np.float32)
    assert np.array_equal(IntensityAugmentation(**OFF)(x, rng), x)


def test_gain_and_offset_change_the_moments_as_stated(rng):
    x = rng.normal(0.3, 0.5, size=(3, 64, 64)).astype(np.float32)
    out = _only("gain", gain_range=(1.3, 1.3))(x, rng)
    assert np.allclose(out, 1.3 * x, rtol=1e-6)
    out = _only("offset", offset_range=(-0.2, -0.2))(x, rng)
    std = x.reshape(3, -1).std(axis=1)
    assert np.allclose(out.reshape(3, -1).mean(axis=1), x.reshape(3, -1).mean(axis=1) - 0.2 * std, atol=1e-5)
    assert np.allclose(out.reshape(3, -1).std(axis=1), std, rtol=1e-5)
    both = IntensityAugmentation(**{**OFF, "gain_probability": 1.0, "offset_probability": 1.0},
                                 gain_range=(0.8, 0.8), offset_range=(0.1, 0.1))(x, rng)
    # gain first, then the offset in units of the gained patch's std
    assert np.allclose(both.reshape(3, -1).mean(axis=1), 0.8 * x.reshape(3, -1).mean(axis=1) + 0.1 * 0.8 * std,
                       atol=1e-5)
    gains = [IntensityAugmentation(**{**OFF, "gain_probability": 1.0})(x[:1], np.random.default_rng(s))[0, 0, 0]
             / x[0, 0, 0] for s in range(200)]
    assert 0.7 - 1e-6 <= min(gains) and max(gains) <= 1.4 + 1e-6 and np.median(gains) == pytest.approx(1.0, abs=0.06)


def test_gamma_acts_on_the_patch_rescaled_by_its_min_and_max(rng):
    x = np.array([[[-1.0, 0.0], [0.5, 1.0]]], np.float32)
    out = _only("gamma", gamma_range=(2.0, 2.0))(x, rng)
    # (x − lo) / (hi − lo) = 0, ½, ¾, 1 → squared, mapped back onto [−1, 1]
    assert np.allclose(out, [[[-1.0, -0.5], [0.125, 1.0]]], atol=1e-6)
    flat = np.full((1, 4, 4), 0.3, np.float32)
    assert np.array_equal(_only("gamma")(flat, rng), flat)


@pytest.mark.parametrize("shape", [(2, 40, 48), (2, 5, 40, 48)], ids=["2d", "3d"])
def test_blur_is_a_gaussian_filter_in_yx_only(rng, shape):
    x = rng.normal(size=shape).astype(np.float32)
    out = _only("blur", blur_sigma_px=(1.2, 1.2))(x, rng)
    for c in range(shape[0]):
        planes = x[c] if x.ndim == 4 else x[c][None]
        expected = np.stack([gaussian_filter(p.astype(np.float64), 1.2) for p in planes])
        assert np.allclose(out[c], expected.reshape(out[c].shape), atol=1e-6)


def test_noise_has_the_stated_std(rng):
    x = rng.normal(2.0, 3.0, size=(2, 256, 256)).astype(np.float32)
    out = _only("noise", noise_std=(0.1, 0.1))(x, rng)
    noise = (out - x).reshape(2, -1)
    assert np.allclose(noise.std(axis=1), 0.1 * x.reshape(2, -1).std(axis=1), rtol=0.02)
    assert np.abs(noise.mean(axis=1)).max() < 0.01


def test_augmentation_ranges_are_checked():
    for bad in ({"gain_range": (0.0, 1.0)}, {"gain_range": (1.4, 0.7)}, {"blur_sigma_px": (-1.0, 1.0)},
                {"noise_probability": 1.5}):
        with pytest.raises(ValueError):
            IntensityAugmentation(**bad)


# --- per-image normalisation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["percentile", "zscore", "minmax"])
def test_per_image_scope_removes_gain_and_offset_of_each_image(rng, method):
    a = rng.gamma(2.0, 100.0, size=(2, 50, 60)).astype(np.float32)
    b = (a * np.array([2.5, 0.4], np.float32)[:, None, None] + 30.0).astype(np.float32)  # brighter field, other gain
    fitted = Normalizer.fit([a], method, scope="image")
    assert np.allclose(fitted(a), fitted(b), atol=1e-5)
    dataset = Normalizer.fit([a], method)
    assert np.allclose(fitted(a), dataset(a), atol=1e-5)  # the fitted image normalises like its own statistics
    assert not np.allclose(dataset(a), dataset(b), atol=1e-2)
    flat = np.full((2, 8, 8), 7.0, np.float32)  # a constant channel keeps the fitted scale: no division by 0
    assert np.isfinite(fitted(flat)).all()
    with pytest.raises(ValueError, match="no inverse"):
        fitted.inverse(a)


def _bundle(input_normalizer: Normalizer) -> ModelBundle:
    torch.manual_seed(0)
    net = build("pics", make_config("pics", 1, 2, spatial_dims=2, depth=2, base_width=4)).eval()
    return ModelBundle(net, "pics", input_normalizer, Normalizer("zscore", [10.0, 0.0], [2.0, 1.0]), ["in"], ["a", "b"])


def test_the_scope_survives_the_bundle_and_old_records_load_as_dataset(rng, tmp_path):
    x = rng.gamma(2.0, 100.0, size=(1, 40, 40)).astype(np.float32)
    norm = Normalizer.fit([x], "percentile", (2.0, 99.0), scope="image")
    assert Normalizer.from_dict(norm.to_dict()) == norm
    loaded = load_bundle(save_bundle(_bundle(norm), tmp_path / "m"))
    assert loaded.input_normalizer == norm and loaded.input_normalizer.scope == "image"
    assert loaded.input_normalizer.percentiles == (2.0, 99.0) and loaded.target_normalizer.scope == "dataset"
    old = {"method": "percentile", "offset": [1.0], "scale": [2.0], "clip": False}  # before scopes existed
    assert Normalizer.from_dict(old) == Normalizer("percentile", [1.0], [2.0])
    assert Normalizer.from_dict(old).scope == "dataset"
    format1 = load_bundle(Path(__file__).parent / "data" / "bundles_format1" / "pics")
    assert format1.input_normalizer.scope == "dataset"
    for bad in ({"scope": "tile"}, {"percentiles": [99.0, 1.0]}):
        with pytest.raises(UserError, match="n.json"):
            Normalizer.from_dict({**old, **bad}, "n.json")


def test_per_image_scope_predicts_tiled_as_whole_and_ignores_the_fields_brightness(rng):
    image = (rng.gamma(2.0, 50.0, size=(1, 150, 190)) + 20.0).astype(np.float32)
    bundle = _bundle(Normalizer.fit([image[:, :60]], "zscore", scope="image"))
    spatial = pad_to_multiple(image, bundle.config.size_multiple())[0].shape[1:]
    assert count_tiles(spatial, bundle.config, [64, 64]) > 1
    whole = predict(bundle, image, tile_size=0)
    tiled = predict(bundle, image, tile_size=64)  # the image is normalised once, then cut into tiles
    span = whole.max() - whole.min()
    assert np.abs(tiled - whole).max() / span < 1e-4
    brighter = predict(bundle, 3.0 * image + 100.0, tile_size=0)
    assert np.abs(brighter - whole).max() / span < 1e-4


# --- MS-SSIM and the mixed loss -------------------------------------------------------------------------------

def _reference_ms_ssim(p: np.ndarray, t: np.ndarray, scales: int) -> float:
    """Wang et al. 2003 with scipy filters (float64): 11-tap Gaussian σ 1.5, borders cropped, 2×2 averaging."""
    betas = np.array(WANG_BETAS[:scales]) / sum(WANG_BETAS[:scales])
    c1, c2, value = 0.01 ** 2, 0.03 ** 2, 1.0
    for j in range(scales):
        if j:
            p, t = (a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2].reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2)
                    .mean(axis=(1, 3)) for a in (p, t))

        def blur(a):
            return gaussian_filter(a, 1.5, truncate=3.5)[5:-5, 5:-5]
        mp, mt = blur(p), blur(t)
        vp, vt, cov = blur(p * p) - mp ** 2, blur(t * t) - mt ** 2, blur(p * t) - mp * mt
        cs = (2 * cov + c2) / (vp + vt + c2)
        term = cs if j < scales - 1 else cs * (2 * mp * mt + c1) / (mp ** 2 + mt ** 2 + c1)
        value *= term.mean() ** betas[j]
    return value


def _pair(rng, shape=(4, 1, 128, 128), noise=0.3):
    t = gaussian_filter(rng.normal(size=shape), (0, 0, 2, 2))
    lo, hi = t.min(axis=(0, 2, 3), keepdims=True), t.max(axis=(0, 2, 3), keepdims=True)
    t = (t - lo) / (hi - lo)  # each channel of the batch's target spans [0, 1]
    p = t + noise * gaussian_filter(rng.normal(size=shape), (0, 0, 1, 1))
    return torch.tensor(p, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)


def test_single_scale_ssim_equals_scikit_image(rng):
    p, t = _pair(rng)
    expected = np.mean([structural_similarity(p[i, 0].double().numpy(), t[i, 0].double().numpy(), data_range=1.0,
                                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                        for i in range(len(t))])
    assert float(ms_ssim(p, t, scales=1)) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("size", [128, 64])
def test_ms_ssim_equals_an_independent_reference(rng, size):
    p, t = _pair(rng, (3, 2, size, size))
    expected = np.mean([_reference_ms_ssim(p[i, c].double().numpy(), t[i, c].double().numpy(), 3)
                        for i in range(3) for c in range(2)])
    assert float(ms_ssim(p, t)) == pytest.approx(expected, abs=1e-5)
    # the mixed loss is α (1 − MS-SSIM) + (1 − α) L1
    loss = LOSSES["mae_msssim"](p, t)
    assert float(loss) == pytest.approx(MSSSIM_ALPHA * (1 - expected) + (1 - MSSSIM_ALPHA) * float(F.l1_loss(p, t)),
                                        abs=1e-5)


def test_ms_ssim_is_invariant_to_the_targets_units(rng):
    """Normalised targets may be negative and of any range: the target's min and range set the scale."""
    p, t = _pair(rng)
    assert float(ms_ssim(5.0 * p - 3.0, 5.0 * t - 3.0)) == pytest.approx(float(ms_ssim(p, t)), abs=1e-5)


@pytest.mark.parametrize("shape", [(8, 1, 128, 128), (8, 2, 64, 64), (2, 1, 4, 64, 64), (1, 1, 20, 300), (1, 1, 9, 9)],
                         ids=["128", "64", "3d", "thin", "tiny"])
def test_mixed_loss_is_zero_for_identical_arrays_and_finite_with_finite_gradients(rng, shape):
    loss = make_loss("mae_msssim")
    t = torch.tensor(rng.normal(-2.0, 0.5, size=shape), dtype=torch.float32)  # negative normalised values
    assert float(loss(t, t)) == pytest.approx(0.0, abs=1e-5)
    for p in (torch.tensor(rng.normal(size=shape), dtype=torch.float32), -t, torch.zeros(shape), 100.0 + t):
        p.requires_grad_(True)
        value = loss(p, t)
        value.backward()
        assert torch.isfinite(value) and float(value.detach()) >= 0.0 and torch.isfinite(p.grad).all()


def test_mixed_loss_is_computed_in_float32_under_bf16_autocast(rng):
    p, t = _pair(rng, (8, 1, 64, 64))
    expected = float(LOSSES["mae_msssim"](p, t))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = LOSSES["mae_msssim"](p.bfloat16(), t.bfloat16())
    assert value.dtype == torch.float32 and float(value) == pytest.approx(expected, abs=5e-3)


# --- foreground weighting -------------------------------------------------------------------------------------

def test_make_loss_without_weight_is_the_plain_loss(rng):
    p, t = (torch.tensor(rng.normal(size=(4, 2, 32, 32)), dtype=torch.float32) for _ in range(2))
    thresholds = np.array([0.0, 0.5], np.float32)
    for name in ("mse", "mae", "pearson", "mae_msssim"):
        assert make_loss(name) is LOSSES[name]
        assert float(make_loss(name, 0.0, thresholds)(p, t)) == float(LOSSES[name](p, t))


def test_foreground_pixels_weigh_one_plus_w():
    t = torch.tensor([[[[0.0, 1.0], [0.2, 2.0]]], [[[0.0, 0.0], [0.0, 3.0]]]])  # (2, 1, 2, 2); threshold 0.5
    p = torch.full_like(t, 0.5)
    w, thr = 3.0, np.array([0.5])
    error = (t - p).abs()  # 0.5 0.5 / 0.3 1.5  ;  0.5 0.5 / 0.5 2.5
    weights = 1 + w * (t > 0.5).float()  # foreground: 1.0, 2.0 and 3.0
    expected_mae = float((weights * error).sum()) / 8  # (0.5 + 4·0.5 + 0.3 + 4·1.5 + 0.5·3 + 4·2.5) / 8
    assert expected_mae == pytest.approx((0.5 + 2.0 + 0.3 + 6.0 + 1.5 + 10.0) / 8)
    assert float(make_loss("mae", w, thr)(p, t)) == pytest.approx(expected_mae)
    assert float(make_loss("mse", w, thr)(p, t)) == pytest.approx(float((weights * error ** 2).sum()) / 8)
    mixed = make_loss("mae_msssim", w, thr)(p, t)
    assert float(mixed) == pytest.approx(MSSSIM_ALPHA * (1 - float(ms_ssim(p, t))) + (1 - MSSSIM_ALPHA) * expected_mae)


def test_make_loss_refuses_what_it_cannot_do():
    with pytest.raises(UserError, match="pearson"):
        make_loss("pearson", 1.0, np.array([0.5]))
    with pytest.raises(UserError, match="unknown"):
        make_loss("ssim")
    with pytest.raises(ValueError, match="threshold"):
        make_loss("mse", 1.0)
    with pytest.raises(ValueError, match="2 foreground thresholds"):
        make_loss("mse", 1.0, np.array([0.1, 0.2]))(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
