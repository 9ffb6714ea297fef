"""The input check against the training domain: descriptors, distances, thresholds, warnings and the map."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from virtualstain.analysis.input_domain import (
    GroupReference,
    InputDomain,
    cut_tiles,
    image_descriptors,
    tile_corners,
)
from virtualstain.errors import UserError
from virtualstain.inference.bottleneck import bottleneck_features, find_bottleneck
from virtualstain.inference.domain_check import (
    UnfamiliarInputWarning,
    check_domain,
    domain_tile_px,
    warn_if_unfamiliar,
)
from virtualstain.models.configs import SRCNNConfig, UNetConfig
from virtualstain.models.srcnn import SRCNN
from virtualstain.models.unet import UNet


def test_tiles_cover_the_image_and_thin_evenly():
    corners = tile_corners((100, 150), 64)
    covered = np.zeros((100, 150), bool)
    for y, x in corners:
        covered[y:y + 64, x:x + 64] = True
    assert covered.all() and corners[-1] == (36, 86)
    assert len(tile_corners((100, 150), 64, max_tiles=2)) == 2
    assert tile_corners((50, 150), 64) == []


def test_descriptors_measure_noise_polarity_and_spectrum(rng):
    noise = rng.normal(0.5, 0.1, (1, 1, 64, 64)).astype(np.float32)
    d = image_descriptors(noise)
    assert 10 ** d["texture"][0, -1] == pytest.approx(0.1, rel=0.08)  # the pixel noise σ of white noise
    shares = 10 ** d["texture"][0, :-1]
    assert shares.sum() == pytest.approx(1.0, abs=0.01)  # five bands hold all the power but the DC bin
    blobs = np.zeros((1, 1, 64, 64), np.float32)
    blobs[..., 20:44, 20:44] = 1.0  # 14 % of the tile: above its 90th percentile
    blobs += 0.01 * rng.random(blobs.shape).astype(np.float32)
    skew = image_descriptors(blobs)["contrast"][0, 2]
    inverted = image_descriptors(1.0 - blobs)["contrast"][0, 2]
    assert skew > 0.5 and inverted == pytest.approx(-skew, abs=1e-5)
    blurred = ndimage.gaussian_filter(noise, (0, 0, 3, 3))
    assert 10 ** image_descriptors(blurred)["texture"][0, -1] < 0.2 * 0.1


def test_distance_is_the_rms_z_score_for_independent_descriptors(rng):
    values = rng.normal([1.0, 10.0], [0.5, 2.0], (20000, 2))
    ref = GroupReference.fit(values, ["a", "b"])
    point = np.array([[1.0 + 3 * 0.5, 10.0]])
    # R ≈ I, so R⁻¹ ≈ I: D² = (3² + 0²) / 2
    assert ref.distance(point)[0] == pytest.approx(np.sqrt(9 / 2), rel=0.03)
    ref.calibrate(ref.distance(values))
    assert np.mean(ref.distance(values) > ref.threshold) < 0.01


def test_a_damaged_record_is_refused_with_the_file_name():
    with pytest.raises(UserError, match=r"^model.json: input_domain is damaged"):
        InputDomain.from_dict({"tile_px": 64, "groups": {"colour": {}}}, "model.json")
    assert InputDomain.from_dict(None, "model.json") is None


def test_the_bottleneck_is_the_deepest_widest_output():
    unet = UNet(UNetConfig(in_channels=1, out_channels=1, depth=2, base_width=4)).eval()
    assert find_bottleneck(unet, 1, (32, 32)) == "bottleneck"
    tiles = np.zeros((3, 1, 32, 32), np.float32)
    assert bottleneck_features(unet, "bottleneck", tiles).shape == (3, unet.config.widths()[2])
    srcnn = SRCNN(SRCNNConfig(in_channels=1, out_channels=1, scale=1, base_width=8)).eval()
    name = find_bottleneck(srcnn, 1, (16, 16))
    assert bottleneck_features(srcnn, name, np.zeros((2, 1, 16, 16), np.float32)).shape[0] == 2


def _test_image(run) -> np.ndarray:
    import tifffile

    image = tifffile.imread(sorted((run.run_dir / "test" / "input").glob("*.tif"))[0]).astype(np.float32)
    return image[None] if image.ndim == 2 else image


def test_training_stores_a_calibrated_domain_that_round_trips(trained_run):
    from virtualstain.models.bundle import load_bundle

    domain = trained_run.bundle.input_domain
    assert domain is not None and domain.tile_px == domain_tile_px(trained_run.bundle.config)
    assert set(domain.groups) == {"brightness", "contrast", "texture", "features"}
    assert domain.held_out_outside <= 0.05
    loaded = load_bundle(trained_run.model_dir).input_domain
    assert loaded is not None and loaded.to_dict() == domain.to_dict()


def test_in_domain_input_is_quiet_and_a_gain_change_warns_naming_brightness(trained_run):
    bundle = trained_run.bundle
    image = _test_image(trained_run)
    quiet = check_domain(bundle, image, max_tiles=None)
    assert quiet is not None and quiet.fraction_outside <= 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warned = warn_if_unfamiliar(bundle, quiet, "field.tif")
    assert warned == (quiet.fraction_outside > 0.2) == (len(caught) == 1)
    bright = check_domain(bundle, 3 * image, max_tiles=None)
    assert bright is not None and bright.fraction_outside == 1.0
    assert "brightness" in bright.groups_outside()
    with pytest.warns(UnfamiliarInputWarning, match=r"^bright.tif: unlike the model's training images in \d+ of \d+ "
                                                    r"tiles \(100 %.*brightness: phase (mean|median) [\d.]+ \(training"):
        warn_if_unfamiliar(bundle, bright, "bright.tif")


def test_the_map_puts_each_tile_score_on_its_pixels(trained_run):
    bundle = trained_run.bundle
    image = _test_image(trained_run)
    scores = check_domain(bundle, image, max_tiles=None)
    maps = scores.maps(image.shape[-2:])
    t = scores.tile_px
    assert maps.shape == (5, *image.shape[-2:])
    y, x = scores.corners[0]
    assert maps[0, y, x] == pytest.approx(scores.score[0])
    tiles = cut_tiles(bundle.input_normalizer(image), scores.corners, t)
    assert tiles.shape[-2:] == (t, t)


def test_a_model_without_a_domain_is_not_checked(trained_run):
    import dataclasses

    bundle = dataclasses.replace(trained_run.bundle, input_domain=None)
    assert check_domain(bundle, _test_image(trained_run)) is None
