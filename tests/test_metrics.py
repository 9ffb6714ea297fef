"""Metrics against independent references (scipy, scikit-image, numpy) and analytic cases."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.stats import pearsonr
from skimage import metrics as skm

from virtualstain import metrics as M


@pytest.fixture
def pair(rng):
    t = ndi.gaussian_filter(rng.normal(size=(64, 80)), 2) * 50 + 100
    p = t + rng.normal(size=t.shape) * 5
    return p, t


def test_pearson_and_masked_pearson_match_scipy(pair):
    p, t = pair
    assert M.pearson_r(p, t) == pytest.approx(pearsonr(p.ravel(), t.ravel())[0], abs=1e-6)
    mask = t > np.median(t)
    assert M.pearson_r(p, t, mask) == pytest.approx(pearsonr(p[mask], t[mask])[0], abs=1e-6)
    assert np.isnan(M.pearson_r(p, np.ones_like(t)))
    with pytest.raises(ValueError, match="differs from target shape"):
        M.pearson_r(p, t[:10])


def test_segmentation_pcc_uses_pixels_above_otsu(pair):
    from skimage.filters import threshold_otsu

    p, t = pair
    m = t > threshold_otsu(t)
    assert M.segmentation_pcc(p, t) == pytest.approx(pearsonr(p[m], t[m])[0], abs=1e-6)
    assert M.segmentation_pcc(p, t, threshold=100.0) == pytest.approx(pearsonr(p[t > 100], t[t > 100])[0], abs=1e-6)


def test_pixel_metrics_match_skimage(pair):
    p, t = pair
    rng_t = t.max() - t.min()
    assert M.mse(p, t) == pytest.approx(skm.mean_squared_error(t, p), rel=1e-9)
    assert M.mae(p, t) == pytest.approx(np.mean(np.abs(p - t)), rel=1e-9)
    assert M.nrmse(p, t) == pytest.approx(skm.normalized_root_mse(t, p, normalization="min-max"), rel=1e-9)
    assert M.nrmse(p, t) == pytest.approx(np.sqrt(np.mean((p - t) ** 2)) / rng_t, rel=1e-9)  # RMSE / range, not √MAE
    assert M.psnr(p, t, data_range=rng_t) == pytest.approx(skm.peak_signal_noise_ratio(t, p, data_range=rng_t), abs=1e-6)
    value, smap = M.ssim(p, t, data_range=rng_t, full=True)
    ref, ref_map = skm.structural_similarity(t, p, data_range=rng_t, full=True)
    assert value == pytest.approx(ref, abs=1e-6) and np.allclose(smap, ref_map, atol=1e-6)
    assert M.ssim(t, t, data_range=rng_t) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="data_range must be > 0"):
        M.ssim(p, t, data_range=0)
    stack_t, stack_p = np.stack([t, t[::-1]]), np.stack([p, p[::-1]])  # a 2-plane stack: scored plane by plane
    planes = [skm.structural_similarity(a, b, data_range=rng_t) for a, b in zip(stack_t, stack_p)]
    assert M.ssim(stack_p, stack_t, data_range=rng_t) == pytest.approx(np.mean(planes), abs=1e-6)
    with pytest.raises(ValueError, match="at least 7×7"):
        M.ssim(p[:5, :5], t[:5, :5], data_range=rng_t)


def test_accuracy_score_skips_images_without_signal(rng):
    images = [ndi.gaussian_filter(rng.normal(size=(32, 32)), 2) for _ in range(3)]
    targets = [np.clip(im, 0, None) * 10 for im in images]
    preds = [t + rng.normal(size=t.shape) for t in targets]
    empty = np.zeros((32, 32))
    score = M.accuracy_score(preds + [rng.normal(size=(32, 32))], targets + [empty], threshold=0.5)
    expected = np.mean([pearsonr(p.ravel(), t.ravel())[0] for p, t in zip(preds, targets)])
    assert score.p == pytest.approx(expected, abs=1e-6)
    assert (score.n_used, score.n_total) == (3, 4) and np.isnan(score.per_image[3])
    assert len(M.tiles(np.zeros((2, 100, 70)), 32)) == 6


def test_accuracy_score_of_precomputed_r_is_accuracy_score(rng):
    from virtualstain.metrics.correlation import accuracy_score_of_r

    targets = [np.clip(ndi.gaussian_filter(rng.normal(size=(32, 32)), 2), 0, None) * 10 for _ in range(4)]
    targets.append(np.zeros((32, 32)))  # no signal: left out
    preds = [t + rng.normal(size=t.shape) for t in targets]
    expected = M.accuracy_score(preds, targets)
    pooled = accuracy_score_of_r([M.pearson_r(p, t) for p, t in zip(preds, targets)], targets)
    assert (pooled.p, pooled.n_used, pooled.n_total, pooled.threshold) == \
        (expected.p, expected.n_used, expected.n_total, expected.threshold)
    assert np.allclose(pooled.per_image, expected.per_image, equal_nan=True) and pooled.n_used == 4


def test_noise_ceiling_is_the_best_reachable_correlation(rng):
    signal = ndi.gaussian_filter(rng.normal(size=(256, 256)), 3)
    signal *= 2.0 / signal.std()  # ⟨S²⟩ = 4
    noise = rng.normal(size=signal.shape)  # ⟨N²⟩ = 1 → SNR 4 → C_max = sqrt(4/5)
    target = signal + noise
    with_images = M.noise_ceiling(target, [rng.normal(size=signal.shape) for _ in range(3)])
    assert with_images == pytest.approx(np.sqrt(4 / 5), abs=0.01)
    assert with_images == pytest.approx(M.pearson_r(signal, target), abs=0.01)  # the perfect model's r
    assert M.noise_ceiling(target) == pytest.approx(np.sqrt(4 / 5), abs=0.02)  # wavelet noise estimate


def test_tolerance_index_hand_computed():
    o = np.array([[0.0, 10.0], [20.0, 255.0]])
    g = np.zeros((2, 2))
    ti = M.tolerance_index(o, g, bit_depth=8)
    # t_0 = 0: only the 0 difference is tolerated → IE 0, SE 3/4
    assert ti.intensity_error[0] == 0 and ti.spatial_error[0] == 0.75 and ti.total[0] == 0.75
    # t_4 = 10.2: {0, 10} tolerated → IE = mean(0, 10)/255, SE = 1/2
    assert ti.total[4] == pytest.approx(5 / 255 + 0.5)
    # from t_8 = 20.4 on, {0, 10, 20} tolerated, 255 never → the minimum, 10/255 + 1/4
    assert ti.best_threshold == pytest.approx(0.08 * 255)
    assert ti.tolerance_level == pytest.approx(10 / 255 + 0.25)
    assert ti.thresholds.shape == (100,) and ti.total[99] == pytest.approx(10 / 255 + 0.25)


def test_joint_histogram_and_line_profiles(pair):
    p, t = pair
    counts, t_edges, p_edges = M.joint_histogram(p, t, bins=16)
    ref, _, _ = np.histogram2d(t.ravel(), p.ravel(), bins=16, range=[(t_edges[0], t_edges[-1])] * 2)
    assert np.array_equal(counts, ref) and counts.sum() == t.size
    ramp = np.tile(np.arange(20.0), (5, 1))
    prof = M.line_profiles({"ramp": ramp}, (2, 3), (2, 12))["ramp"]
    assert np.allclose(prof, np.arange(3.0, 13.0))
