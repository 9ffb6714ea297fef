"""virtualstain.optics against analytic results: propagation, Abbe imaging, TIE, phase shifting,
gradient integration, camera, dry mass and growth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from virtualstain import optics

LAMBDA, PX = 0.55, 0.1  # µm


def gaussian_phase(n: int, px: float, sigma_um: float, peak: float = 1.0) -> np.ndarray:
    yy, xx = np.indices((n, n), dtype=float)
    r2 = ((yy - n / 2) ** 2 + (xx - n / 2) ** 2) * px * px
    return peak * np.exp(-r2 / (2 * sigma_um ** 2))


def band_limited_field(rng, n: int = 128, cutoff: float = 0.15) -> np.ndarray:
    spectrum = np.fft.fft2(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
    fy, fx = optics.spatial_frequencies((n, n), 1.0)
    return np.fft.ifft2(spectrum * (fy ** 2 + fx ** 2 < cutoff ** 2))


# --- propagation -------------------------------------------------------------------------------------------

def test_propagation_forward_then_back_recovers_a_band_limited_field(rng):
    field = band_limited_field(rng)  # all frequencies propagate: |f| < 0.15/px = 1.5/µm < 1/λ
    there = optics.propagate(field, 7.5, wavelength_um=LAMBDA, pixel_size_um=PX)
    back = optics.propagate(there, -7.5, wavelength_um=LAMBDA, pixel_size_um=PX)
    assert np.abs(back - field).max() < 1e-10 * np.abs(field).max()
    energy = np.sum(np.abs(field) ** 2)
    assert np.sum(np.abs(there) ** 2) == pytest.approx(energy, rel=1e-12)


def test_propagation_removes_evanescent_waves_and_stays_finite_backwards():
    n, px = 64, 0.1
    kernel = optics.angular_spectrum_kernel((n, n), px, LAMBDA, -50.0)
    fy, fx = optics.spatial_frequencies((n, n), px)
    evanescent = fy ** 2 + fx ** 2 > (1 / LAMBDA) ** 2
    assert evanescent.any() and np.all(kernel[evanescent] == 0)
    assert np.allclose(np.abs(kernel[~evanescent]), 1.0)
    assert np.isfinite(kernel).all()


def test_propagation_of_a_plane_wave_is_the_analytic_phase_factor():
    n, px, z = 64, 0.1, 3.0
    fx0 = 4 / (n * px)  # on the FFT grid
    x = np.arange(n) * px
    wave = np.exp(2j * np.pi * fx0 * x)[None, :] * np.ones((n, 1))
    out = optics.propagate(wave, z, wavelength_um=LAMBDA, pixel_size_um=px, medium_index=1.33)
    kz = np.sqrt((1.33 / LAMBDA) ** 2 - fx0 ** 2)
    assert np.allclose(out, wave * np.exp(2j * np.pi * kz * z), atol=1e-12)


def test_padding_choices_equal_explicit_padding_and_avoid_wrap_around():
    n, px, z, pad = 96, 0.2, 20.0, 24
    phase = np.zeros((n, n))
    phase[:, :8] = 1.0  # an object at the left border
    field = np.exp(1j * phase)
    kw = dict(wavelength_um=LAMBDA, pixel_size_um=px)
    for mode, numpy_mode, fill in (("reflect", "symmetric", None), ("zero", "constant", 0.0)):
        ours = optics.propagate(field, z, padding=mode, pad_px=pad, **kw)
        padded = np.pad(field, pad, mode=numpy_mode) if fill is None else np.pad(field, pad, constant_values=fill)
        reference = optics.propagate(padded, z, **kw)[pad:-pad, pad:-pad]
        assert np.allclose(ours, reference, atol=1e-12)
    # periodic boundaries let the left object's diffraction wrap onto the right border; the mirror does not
    periodic = np.abs(optics.propagate(field, z, **kw)) ** 2
    reflect = np.abs(optics.propagate(field, z, padding="reflect", pad_px=n, **kw)) ** 2
    assert reflect[:, -4:].std() < 0.5 * periodic[:, -4:].std()
    with pytest.raises(ValueError, match="padding must be one of"):
        optics.propagate(field, 1.0, padding="wrap", **kw)


# --- Abbe image formation ----------------------------------------------------------------------------------

def test_abbe_empty_field_has_mean_intensity_one():
    image = optics.brightfield_intensity(np.zeros((64, 80)), z_um=[-3.0, 0.0, 5.0], wavelength_um=LAMBDA,
                                         pixel_size_um=PX, na_obj=0.4, coherence=0.4)
    assert image.shape == (3, 64, 80)
    assert np.allclose(image, 1.0, atol=1e-12)


def test_abbe_coherent_limit_equals_angular_spectrum_propagation():
    phase = gaussian_phase(128, PX, 1.5, 1.2)
    reference = np.abs(optics.propagate(np.exp(1j * phase), 2.0, wavelength_um=LAMBDA, pixel_size_um=PX)) ** 2
    kwargs = dict(z_um=2.0, wavelength_um=LAMBDA, pixel_size_um=PX, na_obj=1.0)  # pupil passes all propagating waves
    coherent = optics.brightfield_intensity(phase, coherence=0.0, **kwargs)
    assert np.abs(coherent - reference).max() < 1e-12
    errors = [np.abs(optics.brightfield_intensity(phase, coherence=s, **kwargs) - reference).max()
              for s in (0.1, 0.01, 0.001)]
    assert errors[0] > 50 * errors[1] > 2500 * errors[2] and errors[2] < 1e-6  # converges as S² → 0


def test_abbe_is_vectorised_over_planes_and_partial_coherence_lowers_contrast():
    phase = gaussian_phase(96, PX, 1.0, 1.0)
    kwargs = dict(wavelength_um=LAMBDA, pixel_size_um=PX, na_obj=0.5)
    stack = optics.brightfield_intensity(phase, z_um=[1.0, 3.0], coherence=0.3, **kwargs)
    single = optics.brightfield_intensity(phase, z_um=3.0, coherence=0.3, **kwargs)
    assert np.array_equal(stack[1], single)
    in_focus = optics.brightfield_intensity(phase, z_um=0.0, coherence=0.0, **kwargs)
    assert in_focus.std() < 1e-3 * optics.brightfield_intensity(phase, z_um=3.0, coherence=0.0, **kwargs).std() + 0.05
    contrast = [optics.brightfield_intensity(phase, z_um=3.0, coherence=s, **kwargs).std() for s in (0.0, 0.5, 1.0)]
    assert contrast[0] > contrast[1] > contrast[2]
    with pytest.raises(ValueError, match="coherence"):
        optics.brightfield_intensity(phase, z_um=1.0, coherence=1.5, **kwargs)


# --- camera ------------------------------------------------------------------------------------------------

def test_binning_is_the_block_mean_and_refuses_ragged_images(rng):
    image = rng.random((2, 8, 12))
    binned = optics.bin_pixels(image, 4)
    assert binned.shape == (2, 2, 3)
    assert binned[1, 1, 2] == pytest.approx(image[1, 4:8, 8:12].mean())
    with pytest.raises(ValueError, match="crop it to a multiple of 4"):
        optics.bin_pixels(image[:, :7], 4)


def test_noise_models_have_the_stated_statistics():
    flat = np.full((400, 400), 0.5)
    gauss = optics.add_gaussian_noise(flat, 0.01, rng=1)
    assert gauss.std() == pytest.approx(0.01, rel=0.02) and gauss.mean() == pytest.approx(0.5, abs=1e-3)
    photons = optics.add_poisson_noise(flat, 200.0, rng=2)
    assert photons.mean() == pytest.approx(0.5, rel=0.01)
    assert photons.var() == pytest.approx(0.5 / 200.0, rel=0.03)  # Poisson: var = mean / photons


def test_brightness_correction_equalises_means_as_in_dl_srqpi(rng):
    images = rng.random((3, 16, 16)) * np.array([1.0, 2.0, 0.5])[:, None, None]
    corrected = optics.correct_brightness(images)
    s_bar = images.mean()
    assert np.allclose(corrected.mean(axis=(1, 2)), s_bar)
    assert np.allclose(corrected[1], images[1] * s_bar / images[1].mean())


# --- TIE ---------------------------------------------------------------------------------------------------

def test_tie_recovers_a_gaussian_phase():
    n, px, lam = 256, 0.2, 0.5
    phase = gaussian_phase(n, px, 3.0, 1.0)
    stack = np.abs(optics.propagate(np.exp(1j * phase), [-0.5, 0.5], wavelength_um=lam, pixel_size_um=px)) ** 2
    for solver in ("fft", "dct"):
        recovered = optics.tie_phase(stack, [-0.5, 0.5], wavelength_um=lam, pixel_size_um=px, solver=solver)
        assert np.abs(recovered - (phase - phase.mean())).max() < 1e-3
    three = np.abs(optics.propagate(np.exp(1j * phase), [-0.5, 0.0, 0.5], wavelength_um=lam, pixel_size_um=px)) ** 2
    recovered = optics.tie_phase(three, [-0.5, 0.0, 0.5], wavelength_um=lam, pixel_size_um=px)
    assert np.abs(recovered - (phase - phase.mean())).max() < 1e-3


def test_poisson_solvers_invert_the_laplacian():
    n, px = 64, 0.5
    yy, xx = np.indices((n, n)) * px
    periodic = np.sin(2 * np.pi * 3 * xx / (n * px)) * np.cos(2 * np.pi * 2 * yy / (n * px))
    lap = -((2 * np.pi * 3 / (n * px)) ** 2 + (2 * np.pi * 2 / (n * px)) ** 2) * periodic
    assert np.abs(optics.solve_poisson(lap, px, "fft", 0.0) - periodic).max() < 1e-12
    neumann = np.cos(np.pi * 3 * (xx / px + 0.5) / n)  # a DCT-II basis function
    lap = -(np.pi * 3 / (n * px)) ** 2 * neumann
    assert np.abs(optics.solve_poisson(lap, px, "dct", 0.0) - neumann).max() < 1e-12


def test_dct_solver_beats_fft_on_a_non_periodic_background():
    n, px, lam = 256, 0.2, 0.5
    yy, xx = np.indices((n, n), dtype=float)
    phase = gaussian_phase(n, px, 3.0, 1.0) + 0.02 * xx * px  # a tilt: not periodic
    field = np.exp(1j * phase)
    stack = np.abs(optics.propagate(field, [-0.5, 0.5], wavelength_um=lam, pixel_size_um=px, padding="reflect",
                                    pad_px=128)) ** 2

    def rms_error(recovered):
        error = recovered - phase
        return np.sqrt(np.mean((error - error.mean()) ** 2))

    fft = rms_error(optics.tie_phase(stack, [-0.5, 0.5], wavelength_um=lam, pixel_size_um=px, solver="fft"))
    dct = rms_error(optics.tie_phase(stack, [-0.5, 0.5], wavelength_um=lam, pixel_size_um=px, solver="dct"))
    assert dct < 1e-3 and fft > 100 * dct


def test_iterative_tie_lowers_the_error_and_stops():
    n, px, lam, dz = 128, 0.2, 0.5, 2.0  # a large defocus: the finite difference is poor
    phase = gaussian_phase(n, px, 2.0, 2.0)
    stack = np.abs(optics.propagate(np.exp(1j * phase), [-dz, dz], wavelength_um=lam, pixel_size_um=px)) ** 2
    truth = phase - phase.mean()
    plain = optics.tie_phase(stack, [-dz, dz], wavelength_um=lam, pixel_size_um=px, solver="fft")
    result = optics.tie_phase_iterative(stack, [-dz, dz], wavelength_um=lam, pixel_size_um=px, solver="fft",
                                        max_iterations=30)
    plain_error = np.abs(plain - truth).max()
    iterative_error = np.abs(result.phase - truth).max()
    assert iterative_error < 0.1 * plain_error
    assert result.iterations >= 1 and len(result.residuals) <= 31
    assert result.residuals[result.iterations] < result.residuals[0]


def test_tie_refuses_bad_stacks():
    with pytest.raises(ValueError, match="one z"):
        optics.tie_phase(np.ones((2, 8, 8)), [0.0], wavelength_um=0.5, pixel_size_um=0.1)
    with pytest.raises(ValueError, match="must differ"):
        optics.tie_phase(np.ones((2, 8, 8)), [1.0, 1.0], wavelength_um=0.5, pixel_size_um=0.1)


# --- phase shifting and gradients -------------------------------------------------------------------------

def test_four_frame_phase_shifting_is_exact(rng):
    phase = np.angle(np.exp(1j * rng.uniform(-4, 4, (32, 32))))
    a, b = 2.0 + rng.random((32, 32)), 0.5 + rng.random((32, 32))
    frames = np.stack([a + b * np.cos(phase - k * np.pi / 2) for k in range(4)])
    assert np.abs(np.angle(np.exp(1j * (optics.four_frame_phase(frames) - phase)))).max() < 1e-12
    assert np.allclose(optics.four_frame_modulation(frames), b)
    with pytest.raises(ValueError, match="four frames"):
        optics.four_frame_phase(frames[:3])


def test_slim_relation_gives_the_phase_of_the_total_field(rng):
    beta, delta = rng.uniform(0.05, 3, 100), rng.uniform(-np.pi, np.pi, 100)
    expected = np.angle(1 + beta * np.exp(1j * delta))  # E = E0 (1 + β e^{iΔφ})
    assert np.allclose(optics.slim_phase(delta, beta), expected, atol=1e-12)


def test_gradient_integration_recovers_a_non_periodic_phase():
    ny, nx, px = 64, 256, 0.2
    y = np.arange(ny)[:, None] * px
    x = np.arange(nx)[None, :] * px

    def phi(x, y):
        return 0.01 * x + 0.005 * y + 2 * np.exp(-((x - 25) ** 2 + (y - 6) ** 2) / 10)

    truth = phi(x, y) - phi(x, y).mean(axis=1, keepdims=True)  # a constant per line is unobservable
    shear = 0.3  # 1.5 px
    difference = phi(x + shear / 2, y) - phi(x - shear / 2, y)
    exact = optics.integrate_gradient(difference, shear_um=shear, pixel_size_um=px)
    first_order = optics.integrate_gradient(difference, shear_um=shear, pixel_size_um=px, finite_shear=False)
    assert np.abs(exact - truth).max() < 1e-3
    assert np.abs(first_order - truth).max() > np.abs(exact - truth).max()
    # without the antisymmetric extension the tilt wraps around: a periodic integration fails
    f = np.fft.fftfreq(nx, px)
    d = 2j * np.sin(np.pi * f * shear)
    periodic = np.fft.ifft(np.fft.fft(difference, axis=1) * np.where(f == 0, 0, 1 / np.where(f == 0, 1, d)), axis=1).real
    assert np.abs(periodic - truth).max() > 100 * np.abs(exact - truth).max()
    along_y = optics.integrate_gradient(difference.T, shear_um=shear, pixel_size_um=px, axis=0)
    assert np.allclose(along_y, exact.T)


# --- focus -------------------------------------------------------------------------------------------------

def test_haar_measure_prefers_sharp_images_and_modes_are_explicit(rng):
    sharp = rng.random((64, 64))
    stack = np.stack([ndimage.gaussian_filter(sharp, s) for s in (3.0, 1.0, 0.0, 2.0)])
    assert list(optics.select_focus_planes(stack, 2)) == [2, 1]
    assert optics.select_focus_planes(stack, 1, mode="min")[0] == 0
    assert optics.haar_detail_energy(3 * sharp + 0.0) == pytest.approx(optics.haar_detail_energy(sharp))
    with pytest.raises(ValueError, match="n must be between"):
        optics.select_focus_planes(stack, 5)


# --- dry mass ----------------------------------------------------------------------------------------------

def test_sphere_dry_mass_is_recovered_within_0p1_percent():
    expected = 0.02 * 4 / 3 * np.pi * 5.0 ** 3 / 0.18
    assert expected == pytest.approx(58.18, abs=0.005)
    phase = optics.sphere_phase((128, 128), radius_um=5.0, delta_n=0.02, wavelength_um=0.633, pixel_size_um=0.1,
                                supersample=4)
    mass = optics.mask_dry_mass(phase, np.ones(phase.shape, bool), wavelength_um=0.633, pixel_size_um=0.1,
                                alpha_ml_per_g=0.18)
    assert mass == pytest.approx(expected, rel=1e-3)
    # binning and blurring redistribute the phase but conserve the mass
    binned = optics.bin_pixels(phase, 4)
    assert optics.mask_dry_mass(binned, binned == binned, wavelength_um=0.633, pixel_size_um=0.4) == pytest.approx(mass)
    blurred = ndimage.gaussian_filter(phase, 4.0, mode="constant")
    assert optics.mask_dry_mass(blurred, blurred == blurred, wavelength_um=0.633, pixel_size_um=0.1) == pytest.approx(mass)
    image = optics.brightfield_intensity(phase, z_um=0.0, wavelength_um=0.633, pixel_size_um=0.1, na_obj=0.3)
    assert image.mean() == pytest.approx(1.0, abs=0.02)  # a phase object only redistributes light


def test_sphere_fit_recovers_radius_index_and_offset():
    phase = optics.sphere_phase((160, 160), radius_um=5.0, delta_n=0.02, wavelength_um=0.633, pixel_size_um=0.1,
                                center_px=(70.3, 90.6), supersample=3) + 0.1
    fit = optics.fit_sphere(phase, wavelength_um=0.633, pixel_size_um=0.1)
    assert fit.radius_um == pytest.approx(5.0, rel=2e-3) and fit.delta_n == pytest.approx(0.02, rel=2e-3)
    assert (fit.center_y_px, fit.center_x_px) == pytest.approx((70.3, 90.6), abs=0.05)
    assert fit.offset_rad == pytest.approx(0.1, abs=0.01)


def test_object_and_compartment_masses_add_up(rng):
    phase = rng.uniform(0, 2, (40, 60))
    cells = np.zeros((40, 60), int)
    cells[5:20, 5:30], cells[22:38, 30:55] = 1, 2
    nuclei = np.zeros((40, 60), bool)
    nuclei[8:14, 10:20], nuclei[25:30, 40:45] = True, True
    nuclei[0:2, 0:3] = True  # outside any cell
    kw = dict(wavelength_um=0.6, pixel_size_um=0.5, alpha_ml_per_g=0.2)
    sigma = phase * 0.6 / (2 * np.pi * 0.2)
    rows = optics.object_dry_mass(phase, cells, **kw)
    assert [r["label"] for r in rows] == [1, 2]
    assert rows[0]["dry_mass_pg"] == pytest.approx(sigma[5:20, 5:30].sum() * 0.25)
    assert rows[1]["area_um2"] == pytest.approx(16 * 25 * 0.25)
    parts = optics.compartment_dry_mass(phase, nuclei, cells > 0, **kw)
    first = parts.rows[0]
    assert first["nucleus_dry_mass_pg"] == pytest.approx(sigma[8:14, 10:20].sum() * 0.25)
    assert first["nucleus_dry_mass_pg"] + first["cytoplasm_dry_mass_pg"] == pytest.approx(first["dry_mass_pg"])
    assert first["nc_mass_ratio"] == pytest.approx(first["nucleus_dry_mass_pg"] / first["cytoplasm_dry_mass_pg"])
    assert parts.confluence == pytest.approx((15 * 25 + 16 * 25) / (40 * 60))
    assert parts.nucleus_outside_cells_um2 == pytest.approx(6 * 0.25)
    assert optics.height_from_phase(np.pi, wavelength_um=0.6, delta_n=0.05) == pytest.approx(0.6 / (2 * 0.05))


# --- growth ------------------------------------------------------------------------------------------------

def test_exponential_growth_fit_recovers_the_doubling_time(rng):
    t = np.arange(0, 48, 4.0)
    exact = optics.fit_exponential_growth(t, 200 * 2 ** (t / 20.0))
    assert exact.doubling_time_h == pytest.approx(20.0, rel=1e-10) and exact.mass0_pg == pytest.approx(200.0)
    noisy_mass = 200 * 2 ** (t / 20.0) * np.exp(rng.normal(0, 0.03, t.size))
    noisy = optics.fit_exponential_growth(t, noisy_mass)
    reference = stats.linregress(t, np.log(noisy_mass))
    assert noisy.rate_per_h == pytest.approx(reference.slope)
    low, high = noisy.doubling_time_ci_h
    assert low < noisy.doubling_time_h < high and low < 20.0 < high
    with pytest.raises(ValueError, match="at least 3"):
        optics.fit_exponential_growth(t[:2], noisy_mass[:2])


def test_mass_curves_follow_labels_over_time():
    phase = np.stack([np.full((10, 10), 0.5 * (i + 1)) for i in range(3)])
    labels = np.zeros((10, 10), int)
    labels[:4, :4], labels[5:, 5:] = 3, 7
    rows, field_rows = optics.mass_curves(phase, labels, np.array([0.0, 1.0, 2.0]), wavelength_um=0.6,
                                          pixel_size_um=1.0, alpha_ml_per_g=0.2)
    assert len(rows) == 6 and {r["label"] for r in rows} == {3, 7}
    per_rad = 0.6 / (2 * np.pi * 0.2)
    assert field_rows[2]["dry_mass_pg"] == pytest.approx(1.5 * per_rad * (16 + 25))
