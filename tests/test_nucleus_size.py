"""Nucleus size from the image itself, and segmentation lengths that follow it when no pixel size is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse
from skimage.measure import regionprops
from skimage.transform import rescale

from virtualstain.analysis import estimate_nucleus_diameter, match_objects, segment_nuclei, segmentation_lengths
from virtualstain.cli import cli


def _discs(diameter: float, shape=(400, 400), spacing: float = 2.5, seed: int = 0) -> np.ndarray:
    """Bright discs of one diameter on a grid, with noise."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, 100.0)
    step = int(diameter * spacing)
    for y in range(step // 2, shape[0] - step // 2, step):
        for x in range(step // 2, shape[1] - step // 2, step):
            img[disk((y, x), diameter / 2, shape=shape)] += 400
    return img + rng.normal(0, 10, shape)


@pytest.mark.parametrize("diameter", [8.0, 20.0, 60.0])
def test_diameter_of_discs(diameter):
    size = estimate_nucleus_diameter(_discs(diameter))
    assert size.diameter_px == pytest.approx(diameter, rel=0.08)
    assert size.n_objects >= 4


def test_touching_pairs_are_sized_by_their_lobes():
    """Pairs of touching discs (non-convex components) count as two nuclei of the disc diameter, not one blob."""
    img = np.full((300, 300), 100.0)
    for y in range(40, 300, 80):
        for x in range(40, 260, 110):
            img[disk((y, x), 15, shape=img.shape)] += 400
            img[disk((y, x + 29), 15, shape=img.shape)] += 400
    size = estimate_nucleus_diameter(img)
    assert size.diameter_px == pytest.approx(30, rel=0.12)
    one_blob = np.sqrt(4 * (2 * np.pi * 15 ** 2) / np.pi)  # equivalent diameter of a merged pair ≈ 42 px
    assert size.diameter_px < 0.8 * one_blob


def test_ellipses_report_equivalent_diameter():
    img = np.full((300, 300), 100.0)
    for y in range(40, 300, 70):
        for x in range(40, 300, 70):
            img[ellipse(y, x, 10, 20, shape=img.shape)] += 300
    assert estimate_nucleus_diameter(img).diameter_px == pytest.approx(2 * np.sqrt(10 * 20), rel=0.08)


def test_constant_image_and_wrong_shape():
    size = estimate_nucleus_diameter(np.ones((50, 50)))
    assert np.isnan(size.diameter_px) and size.n_objects == 0
    assert "no nuclei" in size.describe()
    with pytest.raises(ValueError, match=r"2D image \(Y, X\), got shape \(2, 5, 5\)"):
        estimate_nucleus_diameter(np.ones((2, 5, 5)))


def test_pixel_size_wins_over_the_estimate():
    lengths = segmentation_lengths(_discs(20.0), 0.65)  # nuclei of 13 µm
    assert (lengths.pixel_size_um, lengths.smooth_um, lengths.split_depth_um, lengths.min_area_um2) == (0.65, 1.0, 0.5, 20.0)
    small = segmentation_lengths(_discs(20.0), 0.2)  # nuclei of 4 µm: 20 µm² would drop them all
    assert (small.smooth_um, small.split_depth_um) == (1.0, 0.5)
    assert small.min_area_um2 == pytest.approx(0.25 * np.pi * 4.0 ** 2 / 4, rel=0.1)
    assert "minimum area 3.1 µm² for nuclei of 4.0 µm" in small.reason
    scaled = segmentation_lengths(_discs(40.0), None)
    assert scaled.pixel_size_um == 1.0
    assert scaled.smooth_um == pytest.approx(0.05 * 40, rel=0.1)
    assert scaled.split_depth_um == pytest.approx(0.02 * 40, rel=0.1)
    assert scaled.min_area_um2 == pytest.approx(0.05 * np.pi * 40 ** 2 / 4, rel=0.2)
    assert "typical nucleus diameter" in scaled.reason


def test_large_nuclei_are_not_shattered_without_a_pixel_size():
    """Upscaled 3×, textured discs shatter with fixed pixel lengths; with lengths from the image they do not."""
    rng = np.random.default_rng(1)
    plain = rescale(_discs(14.0, shape=(140, 140), spacing=2.0), 3, order=1)
    texture = ndi.gaussian_filter(rng.random(plain.shape), 2)
    texture = (texture - texture.mean()) / texture.std()
    big = plain * (1 + 0.4 * np.maximum(texture, 0) ** 2)  # bright chromatin spots
    truth = segment_nuclei(plain, pixel_size_um=1.0, smooth_um=2.0, split_depth_um=2.0)
    fixed = segment_nuclei(big, pixel_size_um=1.0)
    scaled = segment_nuclei(big, **segmentation_lengths(big, None).kwargs())
    assert match_objects(scaled, truth).f1 >= 0.95
    assert match_objects(fixed, truth).f1 <= 0.85


def test_segment_cli_prints_where_lengths_come_from(tmp_path):
    tifffile.imwrite(tmp_path / "nuclei.tif", _discs(24.0).astype(np.float32))
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "labels"),
                                      "--method", "classical"])
    assert result.exit_code == 0, result.output
    assert "no pixel size: typical nucleus diameter 2" in result.output and "lengths scaled to it" in result.output
    labels = tifffile.imread(tmp_path / "labels" / "nuclei.tif")
    assert labels.max() == len(range(30, 400 - 30, 60)) ** 2  # the discs drawn
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "um"),
                                      "--pixel-size-um", "0.5", "--method", "classical"])
    assert result.exit_code == 0 and "(pixel size 0.5 µm)" in result.output


def _median_diameter(labels: np.ndarray) -> float:
    return float(np.median([p.equivalent_diameter_area for p in regionprops(labels.astype(int)) if p.area >= 12]))


def test_estimate_on_real_nuclei(data_dir):
    """Within 0.8–1.3× the manual labels' median diameter on reference images of three microscopes."""
    cases = []
    bbbc = sorted((data_dir / "bbbc039_nuclei" / "images").glob("*.tif"))[:3]
    cases += [(tifffile.imread(f), tifffile.imread(data_dir / "bbbc039_nuclei" / "labels" / f.name)) for f in bbbc]
    cases.append((tifffile.imread(data_dir / "stardist_nuclei" / "image.tif"),
                  tifffile.imread(data_dir / "stardist_nuclei" / "labels.tif")))
    src = data_dir / "celldetective_bf_hoechst"
    meta = json.loads((src / "sample.json").read_text())
    cases.append((tifffile.imread(src / "sample_4ch.tif")[meta["channels"].index("live_nuclei_channel")],
                  tifffile.imread(src / "nuclei_labels.tif")))
    ctc = data_dir / "ctc_sim_nuclei_track"
    cases += [(tifffile.imread(ctc / "images" / f"t{t:03d}.tif"), tifffile.imread(ctc / "seg" / f"man_seg{t:03d}.tif"))
              for t in (0, 64)]
    ratios = [estimate_nucleus_diameter(img).diameter_px / _median_diameter(lab) for img, lab in cases]
    assert all(0.8 <= r <= 1.3 for r in ratios), ratios


def test_ctc_nuclei_segment_better_with_lengths_from_the_image(data_dir):
    """CTC SIM+ frames have no pixel size; fixed pixel lengths split their large textured nuclei."""
    ctc = data_dir / "ctc_sim_nuclei_track"
    fixed, scaled = [], []
    for t in (0, 32, 64):
        img = tifffile.imread(ctc / "images" / f"t{t:03d}.tif").astype(np.float32)
        truth = tifffile.imread(ctc / "seg" / f"man_seg{t:03d}.tif")
        fixed.append(match_objects(segment_nuclei(img), truth).f1)
        scaled.append(match_objects(segment_nuclei(img, **segmentation_lengths(img, None).kwargs()), truth).f1)
    assert np.mean(scaled) >= np.mean(fixed) + 0.1, (fixed, scaled)
