"""Nuclei segmentation and object matching against analytic cases and synthetic ground truth."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from virtualstain.analysis import (
    feature_agreement,
    match_objects,
    object_features,
    segment_cells_from_junctions,
    segment_nuclei,
)
from virtualstain.analysis.matching import iou_matrix
from virtualstain.data.synthetic import make_field


def test_iou_and_matching_on_known_squares():
    true = np.zeros((40, 40), np.int32)
    pred = np.zeros_like(true)
    true[0:10, 0:10] = 1
    true[20:30, 20:30] = 2
    true[0:4, 30:34] = 3  # missed
    pred[0:10, 2:12] = 1  # shifted by 2 px: IoU = 80 / 120
    pred[22:32, 20:30] = 2  # shifted by 2 px down
    pred[35:40, 0:5] = 3  # spurious
    iou = iou_matrix(pred, true)
    assert iou[0, 0] == pytest.approx(80 / 120) and iou[2].sum() == 0
    m = match_objects(pred, true, iou_threshold=0.5, pixel_size_um=0.5)
    assert (m.n_true, m.n_predicted, m.true_positives) == (3, 3, 2)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(2 / 3)
    assert m.count_error == 0.0
    assert np.allclose(sorted(m.displacement_um), [1.0, 1.0])  # 2 px × 0.5 µm
    assert np.allclose(m.area_true_um2, [25.0, 25.0, 4.0])


def test_touching_disks_are_split_and_sizes_filtered():
    yy, xx = np.mgrid[:80, :120]
    image = np.zeros((80, 120))
    for cy, cx in ((40, 40), (40, 62), (15, 100)):  # two touching disks and one apart
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 12 ** 2] = 1.0
    image[70:72, 5:7] = 1.0  # 4 px of debris
    labels = segment_nuclei(image, pixel_size_um=0.5, smooth_um=0.5, min_area_um2=10)
    assert labels.max() == 3
    assert labels[40, 40] != labels[40, 62] and labels[71, 6] == 0


def test_segmentation_finds_synthetic_nuclei():
    f = make_field((192, 192), seed=2)
    labels = segment_nuclei(f.target[0], pixel_size_um=1.0, smooth_um=1.0, min_area_um2=20)
    m = match_objects(labels, f.nuclei_labels)
    assert m.f1 > 0.9 and abs(m.count_error) < 0.1


def test_gaps_in_label_numbers_are_not_objects():
    true = np.zeros((10, 10), np.int32)
    true[0:3, 0:3] = 5
    true[5:8, 5:8] = 9
    m = match_objects(true.copy(), true)
    assert (m.n_true, m.true_positives, m.f1) == (2, 2, 1.0)


@pytest.mark.realdata
def test_bbbc039_segmentation_quality(data_dir):
    """Classical segmentation on BBBC039's manual labels (10 images): a regression guard, numbers in the README."""
    import tifffile

    folder = data_dir / "bbbc039_nuclei"
    if not folder.exists():
        pytest.skip(f"{folder} absent")
    f1, n_pred, n_true = [], 0, 0
    for path in sorted((folder / "images").glob("*.tif")):
        labels = segment_nuclei(tifffile.imread(path), min_area_um2=30)
        m = match_objects(labels, tifffile.imread(folder / "labels" / path.name))
        f1.append(m.f1)
        n_pred, n_true = n_pred + m.n_predicted, n_true + m.n_true
    assert len(f1) == 10
    assert np.mean(f1) > 0.85 and abs(n_pred - n_true) / n_true < 0.11  # measured 0.861, -10.4 %


@pytest.mark.realdata
def test_stardist_image_segmentation_quality(data_dir):
    import tifffile

    folder = data_dir / "stardist_nuclei"
    if not folder.exists():
        pytest.skip(f"{folder} absent")
    m = match_objects(segment_nuclei(tifffile.imread(folder / "image.tif"), min_area_um2=30),
                      tifffile.imread(folder / "labels.tif"))
    assert m.n_true == 125 and m.f1 > 0.7 and abs(m.count_error) < 0.2  # measured 0.719, -15.2 %


def test_segment_command_writes_label_tiffs(tmp_path, capsys):
    from virtualstain.cli import main
    from virtualstain.data.io import read_image, write_tiff

    f = make_field((128, 128), seed=4)
    write_tiff(tmp_path / "nuclei.tif", f.target[:1], pixel_size_um=1.0)
    assert main(["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "seg"), "--smooth-um", "1",
                 "--split-depth-um", "0.8", "--method", "classical"]) == 0
    labels, meta = read_image(tmp_path / "seg" / "nuclei.tif")
    assert labels.dtype == np.uint16 and meta.pixel_size_um == pytest.approx(1.0)
    expected = segment_nuclei(f.target[0], smooth_um=1, split_depth_um=0.8, min_area_um2=20)
    assert np.array_equal(labels, expected) and f"{labels.max()} nuclei" in capsys.readouterr().out
    assert main(["segment", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "seg")]) == 2
    assert main(["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "seg"), "--channel", "3"]) == 2
    assert "--channel 3 but the image has 1 channel(s)" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "seg2"), "--smooth-um", "1"]) == 2
    assert ("--smooth-um set the classical method's lengths, but the method is learned (it sizes the nuclei from "
            "each image); add --method classical, or leave them out") in capsys.readouterr().err


def test_cells_from_a_junction_grid_have_the_grid_areas():
    image = np.zeros((101, 101))
    image[::20, :] = 1.0  # lines every 20 px: a 5×5 grid of 20×20 px cells, border cells cut by nothing
    image[:, ::20] = 1.0
    image[100, :] = image[:, 100] = 1.0
    labels = segment_cells_from_junctions(image, pixel_size_um=0.5, smooth_um=0.25, exclude_border=False)
    assert labels.max() == 25
    areas = np.bincount(labels.ravel())[1:] * 0.25  # µm²
    assert np.all((areas >= 19 * 19 * 0.25) & (areas <= 21 * 21 * 0.25))  # the 1-px line is shared out
    assert areas.sum() >= 0.95 * 100 * 100 * 0.25
    gap = image.copy()
    gap[40, 50:52] = 0.0  # a 2-px break in one junction is closed by the dilation
    assert segment_cells_from_junctions(gap, smooth_um=0.25, exclude_border=False).max() == 25
    assert segment_cells_from_junctions(image, smooth_um=0.25).max() == 25  # exclude_border: grid cells
    assert segment_cells_from_junctions(np.ones((30, 30))).max() == 0


def test_cells_from_synthetic_membrane_match_the_true_cells():
    from skimage.segmentation import clear_border

    f = make_field((256, 256), seed=3, density=2.0)
    labels = segment_cells_from_junctions(f.target[1])
    m = match_objects(labels, clear_border(f.cell_labels))
    assert m.recall >= 0.9  # extra regions are the background gaps between synthetic cells
    assert np.mean([iou for _, _, iou in m.pairs]) > 0.9
    a_pred = np.bincount(labels.ravel())[[p for p, _, _ in m.pairs]]
    a_true = np.bincount(relabel_sequential(clear_border(f.cell_labels))[0].ravel())[[t for _, t, _ in m.pairs]]
    assert np.median(a_pred / a_true) == pytest.approx(1.0, abs=0.05)


def test_object_features_agree_with_scipy_and_analytic_texture():
    rng = np.random.default_rng(0)
    labels = np.zeros((60, 60), np.int32)
    labels[5:15, 5:25] = 1  # 10 × 20 rectangle
    labels[30:50, 30:50] = 2
    image = rng.uniform(0, 100, labels.shape)
    image[5:15, 5:25] = 40.0  # constant object: no texture
    t = object_features(labels, image, pixel_size_um=0.5)
    assert list(t["label"]) == [1, 2]
    assert t["area"][0] == pytest.approx(200 * 0.25)
    assert t["major_axis_um"][0] / t["minor_axis_um"][0] == pytest.approx(2.0, rel=0.05)
    assert np.allclose(t["mean_intensity"], ndi.mean(image, labels, [1, 2]))
    assert np.allclose(t["integrated_intensity"], ndi.sum(image, labels, [1, 2]))
    assert np.allclose(t["std_intensity"], ndi.standard_deviation(image, labels, [1, 2]))
    assert (t["contrast"][0], t["energy"][0], t["homogeneity"][0]) == (0.0, 1.0, 1.0)
    assert t["contrast"][1] > 10  # uniform noise over 32 levels


def test_feature_agreement_between_real_and_virtual():
    f = make_field((192, 192), seed=5)
    real = f.target[0]
    same = feature_agreement(real, real.copy())
    assert same.n_pairs == same.n_real == same.n_virtual > 10
    assert all(v == pytest.approx(1.0) for v in same.pearson_r.values())
    blurred = feature_agreement(real, ndi.gaussian_filter(real, 3))
    assert blurred.pearson_r["area"] > 0.8 and blurred.pearson_r["contrast"] < blurred.pearson_r["area"]
    with pytest.raises(ValueError, match="differ in shape"):
        feature_agreement(real, real[:-1])
