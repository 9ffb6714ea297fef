"""Power spectra: the radially averaged spectrum and the high-frequency power ratio (VirFluoNet's blur measure)."""

import numpy as np
import pytest
from scipy import ndimage

from virtualstain.metrics.spectrum import high_frequency_power_ratio, radial_power_spectrum


def _wave(f_cycles_per_px: float, shape=(128, 128)) -> np.ndarray:
    x = np.arange(shape[1])
    return np.tile(np.cos(2 * np.pi * f_cycles_per_px * x), (shape[0], 1))


def test_ratio_is_one_for_the_target_and_the_square_of_a_gain():
    t = np.random.default_rng(0).normal(size=(2, 96, 80))
    assert high_frequency_power_ratio(t, t) == pytest.approx(1.0)
    assert high_frequency_power_ratio(3 * t + 7, t) == pytest.approx(9.0)  # power ∝ amplitude², mean removed


def test_blur_lowers_the_ratio_and_a_fine_wave_lies_above_the_cutoff():
    t = np.random.default_rng(1).normal(size=(128, 128))
    blurred = ndimage.gaussian_filter(t, 1.5)
    # a Gaussian of σ px passes exp(−2π²σ²f²) in amplitude: above 0.25 cycles/px almost nothing of white noise
    assert high_frequency_power_ratio(blurred, t) < np.exp(-4 * np.pi ** 2 * 1.5 ** 2 * 0.25 ** 2)
    fine, coarse = _wave(0.375), _wave(0.125)  # 48 and 16 cycles across 128 px: on DFT bins
    assert high_frequency_power_ratio(fine + coarse, fine) == pytest.approx(1.0, rel=1e-6)
    assert np.isnan(high_frequency_power_ratio(fine, coarse))  # the target has no power above the cut-off


def test_radial_spectrum_of_white_noise_is_flat_and_peaks_at_a_wave():
    f, p = radial_power_spectrum(np.random.default_rng(2).normal(size=(64, 256, 256)), bins=16)
    assert f[0] == pytest.approx(0.5 / 32) and f[-1] == pytest.approx(0.5 - 0.5 / 32)
    inner = p[2:-1]  # the first ring holds the DC bin, removed with the mean; the window spreads the rest evenly
    assert inner.std() / inner.mean() < 0.05
    f, p = radial_power_spectrum(_wave(0.25), bins=16)
    assert f[np.nanargmax(p)] == pytest.approx(0.25 + 0.5 / 32)  # the ring [0.25, 0.28) holds the wave's bins


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ in shape"):
        high_frequency_power_ratio(np.zeros((8, 8)), np.zeros((8, 9)))
