"""The learned segmenter's targets and instance splitting (analytic), and the shipped model on held-out nuclei."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.draw import disk

from virtualstain.analysis import match_objects
from virtualstain.analysis.learned_nuclei import instances_from_maps, target_maps


def _touching_discs() -> np.ndarray:
    labels = np.zeros((80, 120), np.int32)
    labels[disk((40, 35), 20, shape=labels.shape)] = 1
    labels[disk((40, 73), 20, shape=labels.shape)] = 2  # overlaps disc 1: disc 2 wins the shared pixels
    labels[disk((15, 105), 6, shape=labels.shape)] = 3
    return labels


def test_target_maps_are_foreground_and_per_object_normalised_distance():
    labels = _touching_discs()
    foreground, distance = target_maps(labels)
    np.testing.assert_array_equal(foreground, labels > 0)
    assert distance[labels == 0].max() == 0
    for k in (1, 2, 3):
        assert distance[labels == k].max() == pytest.approx(1.0)
    assert distance[40, 35] == pytest.approx(1.0, abs=0.05)  # centre of disc 1
    # the border between the touching discs is a valley: low distance on both sides
    assert distance[40, 54] < 0.15 and distance[40, 53] < 0.15
    # the small nucleus reaches 1 too (normalised per object, not by the largest)
    assert distance[15, 105] == pytest.approx(1.0, abs=0.1)


def test_target_maps_refuse_float_labels():
    with pytest.raises(ValueError, match="2D integer labels, got float64 of shape"):
        target_maps(np.zeros((4, 4)))


def test_instances_from_ideal_maps_recover_touching_nuclei():
    labels = _touching_discs()
    foreground, distance = target_maps(labels)
    # smooth like a network's output, which never has the exact one-pixel valley
    found = instances_from_maps(ndi.gaussian_filter(foreground, 1), ndi.gaussian_filter(distance, 1))
    m = match_objects(found, labels)
    assert (m.n_predicted, m.true_positives) == (3, 3)
    assert min(iou for _, _, iou in m.pairs) > 0.85


def test_instances_drop_small_objects_and_empty_maps():
    foreground, distance = target_maps(_touching_discs())
    kept = instances_from_maps(foreground, distance, min_area_px=np.pi * 10 ** 2)
    assert kept.max() == 2  # the radius-6 nucleus is gone
    assert instances_from_maps(np.zeros((8, 8)), np.zeros((8, 8))).max() == 0


def _shipped():
    from virtualstain.workflows.stain.nuclei_segmenter import SHIPPED

    if not (SHIPPED / "model.json").is_file():
        pytest.fail(f"the shipped nuclei segmenter is missing from {SHIPPED}")
    return SHIPPED


def test_shipped_segmenter_loads_with_a_model_card_and_checksum():
    folder = _shipped()
    card = (folder / "MODEL_CARD.md").read_text()
    for needed in ("bbbc039_nuclei_train", "CC0", "F1"):
        assert needed in card
    meta = json.loads((folder / "model.json").read_text())
    assert meta["architecture"] == "unet"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 8_000_000  # small enough to ship (1.5 M parameters)


def test_learned_segmenter_on_held_out_bbbc039(data_dir):
    """The 10 BBBC039 images it never saw: better than the classical method (bench_segmenter: 0.899 vs 0.857)."""
    from virtualstain.workflows.stain.nuclei_segmenter import segment_nuclei_learned

    _shipped()
    folder = data_dir / "bbbc039_nuclei"
    learned, classical, n_pred, n_true = [], [], 0, 0
    for path in sorted((folder / "images").glob("*.tif")):
        image, truth = tifffile.imread(path), tifffile.imread(folder / "labels" / path.name)
        m = match_objects(segment_nuclei_learned(image).labels, truth)
        learned.append(m.f1)
        classical.append(match_objects(segment_nuclei_for(image.astype(np.float32)), truth).f1)
        n_pred, n_true = n_pred + m.n_predicted, n_true + m.n_true
    assert np.mean(learned) >= 0.89
    assert np.mean(learned) >= np.mean(classical) + 0.03
    assert abs(n_pred - n_true) / n_true <= 0.10


def test_learned_segmenter_sizes_itself_on_another_microscope(data_dir):
    """celldetective Hoechst (nuclei ≈ 49 px, no pixel size given): the learned model without any setting."""
    from virtualstain.workflows.stain.nuclei_segmenter import segment_nuclei_learned

    _shipped()
    src = data_dir / "celldetective_bf_hoechst"
    channels = json.loads((src / "sample.json").read_text())["channels"]
    image = tifffile.imread(src / "sample_4ch.tif")[channels.index("live_nuclei_channel")]
    result = segment_nuclei_learned(image)
    assert result.scale == pytest.approx(24 / 49, rel=0.25)
    assert match_objects(result.labels, tifffile.imread(src / "nuclei_labels.tif")).f1 >= 0.85


def test_the_judge_segments_both_images_with_the_given_segmenter_at_the_targets_scale():
    """object_readout hands prediction and target to the injected segmenter with one diameter: the target's."""
    from virtualstain.analysis.readouts import object_readout

    labels = _touching_discs()
    target = (labels > 0) * 100.0 + 10
    prediction = ndi.gaussian_filter(target, 3)  # blurrier: its own size estimate would differ
    seen = []

    def segmenter(image, diameter_px):
        seen.append(diameter_px)
        return labels

    readout = object_readout(prediction, target, "nuclei", pixel_size_um=None, nuclei_segmenter=segmenter)
    assert len(seen) == 2 and seen[0] == seen[1]
    from virtualstain.analysis import estimate_nucleus_diameter

    assert seen[0] == estimate_nucleus_diameter(target).diameter_px
    assert readout.match.f1 == 1.0


def test_the_report_says_which_ruler_judged_and_where_it_disagrees_with_the_classical_one():
    from virtualstain.evaluation.scoring import Evaluator
    from virtualstain.report.html import render_report

    labels = _touching_discs()
    target = ((labels > 0) * 100.0 + 10)[None]
    half = np.where(labels == 3, 0, labels)  # a "learned" ruler that misses the small nucleus
    evaluator = Evaluator(nuclei_segmenter=lambda image, d: half)
    evaluator.add("a.tif", target, target, ["dapi"])
    evaluation = evaluator.finish()
    objects = evaluation.rows[0].objects
    classical = segment_nuclei_for(target[0])
    assert objects.segmenter_agreement_f1 == pytest.approx(match_objects(half, classical).f1)
    text = render_report(evaluation)
    assert "the learned segmenter shipped with virtualstain" in text
    assert f"lowest {objects.segmenter_agreement_f1:.2f} on a.tif" in text
    plain = Evaluator()
    plain.add("a.tif", target, target, ["dapi"])
    assert np.isnan(plain.finish().rows[0].objects.segmenter_agreement_f1)


def segment_nuclei_for(image):
    from virtualstain.analysis import segment_nuclei, segmentation_lengths

    return segment_nuclei(image, **segmentation_lengths(image, None).kwargs())


def test_a_damaged_split_file_is_named(tmp_path):
    import shutil

    from virtualstain.errors import UserError
    from virtualstain.workflows.stain.nuclei_segmenter import load_segmenter

    folder = tmp_path / "nuclei"
    shutil.copytree(_shipped(), folder)
    (folder / "split.json").write_text("{not json")
    with pytest.raises(UserError, match=r"split.json: not the segmenter's watershed settings .*; restore it"):
        load_segmenter(str(folder))
