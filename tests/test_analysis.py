"""Nuclei segmentation and object matching against analytic cases and synthetic ground truth."""

import numpy as np
import pytest

from virtualstain.analysis import match_objects, segment_nuclei
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
    labels = segment_nuclei(image, pixel_size_um=0.5, smooth_um=0.5, min_distance_um=5, min_area_um2=10)
    assert labels.max() == 3
    assert labels[40, 40] != labels[40, 62] and labels[71, 6] == 0


def test_segmentation_finds_synthetic_nuclei():
    f = make_field((192, 192), seed=2)
    labels = segment_nuclei(f.target[0], pixel_size_um=1.0, smooth_um=1.0, min_distance_um=5, min_area_um2=20)
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
    f1, err = [], []
    for path in sorted((folder / "images").glob("*.tif")):
        labels = segment_nuclei(tifffile.imread(path), smooth_um=1.5, min_distance_um=10, min_area_um2=50)
        m = match_objects(labels, tifffile.imread(folder / "labels" / path.name))
        f1.append(m.f1)
        err.append(m.count_error)
    assert len(f1) == 10
    assert np.mean(f1) > 0.8 and abs(np.mean(err)) < 0.2


def test_segment_command_writes_label_tiffs(tmp_path, capsys):
    from virtualstain.cli import main
    from virtualstain.data.io import read_image, write_tiff

    f = make_field((128, 128), seed=4)
    write_tiff(tmp_path / "nuclei.tif", f.target[:1], pixel_size_um=1.0)
    assert main(["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "seg"), "--smooth-um", "1",
                 "--min-distance-um", "5"]) == 0
    labels, meta = read_image(tmp_path / "seg" / "nuclei.tif")
    assert labels.dtype == np.uint16 and meta.pixel_size_um == pytest.approx(1.0)
    expected = segment_nuclei(f.target[0], smooth_um=1, min_distance_um=5, min_area_um2=20)
    assert np.array_equal(labels, expected) and f"{labels.max()} nuclei" in capsys.readouterr().out
    assert main(["segment", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "seg")]) == 2
    assert main(["segment", str(tmp_path / "nuclei.tif"), "--out", str(tmp_path / "seg"), "--channel", "3"]) == 2
    assert "--channel 3 but the image has 1 channel(s)" in capsys.readouterr().err
