"""Similarity registration recovers known shifts, rotations and scales; `register` aligns through the prediction."""

import json

import numpy as np
import pytest
from scipy import ndimage

from virtualstain.analysis.registration import Similarity, align, estimate_similarity, overlap_correlation


def _moving(reference: np.ndarray, truth: Similarity) -> np.ndarray:
    """What a camera sees when the reference content sits at ``truth`` (the module's convention), via scipy."""
    m = truth.matrix()
    inv = np.linalg.inv(m)
    c = (np.array(reference.shape) - 1) / 2
    return ndimage.affine_transform(reference, inv, offset=c - inv @ (c + np.array([truth.dy, truth.dx])), order=1)


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    spots = np.zeros((256, 256))
    spots[tuple(rng.integers(20, 236, (2, 60)))] = 1.0
    return ndimage.gaussian_filter(spots, 4) * 100 + ndimage.gaussian_filter(rng.normal(size=(256, 256)), 1)


@pytest.mark.parametrize("truth", [Similarity(5.3, -7.8), Similarity(3.0, 4.0, 6.0), Similarity(-2.5, 1.5, -4.0, 1.08),
                                   Similarity(0.4, -0.3, 1.5, 0.95)], ids=str)
def test_a_known_transform_is_recovered(cells, truth):
    est = estimate_similarity(cells, _moving(cells, truth))
    assert abs(est.dy - truth.dy) < 0.3 and abs(est.dx - truth.dx) < 0.3
    assert abs(est.angle_deg - truth.angle_deg) < 0.3 and abs(est.scale - truth.scale) < 0.005
    assert overlap_correlation(cells, _moving(cells, truth), est) > 0.97  # two bilinear resamplings of pixel noise


def test_align_undoes_the_transform(cells):
    truth = Similarity(2.0, -3.0, 5.0, 1.05)
    back = align(_moving(cells, truth), truth)
    inner = (slice(40, -40), slice(40, -40))
    assert np.corrcoef(back[inner].ravel(), cells[inner].ravel())[0, 1] > 0.98


def test_register_aligns_the_fluorescence_to_the_prediction(trained_run, tmp_path):
    from virtualstain.data.io import read_image, write_tiff
    from virtualstain.inference.predict import predict
    from virtualstain.models.bundle import load_bundle
    from virtualstain.workflows.stain.register import register_by_prediction

    bundle = load_bundle(trained_run.model_dir)
    label_free = sorted((trained_run.run_dir / "test" / "input").glob("*.tif"))[0]
    image, _ = read_image(label_free)
    stain = predict(bundle, image if image.ndim == 3 else image[None])[0]
    truth = Similarity(3.5, -2.0, 3.0, 1.0)
    write_tiff(tmp_path / "fluo.tif", _moving(stain.astype(np.float64), truth).astype(np.float32)[None])
    result = register_by_prediction(bundle, label_free, tmp_path / "fluo.tif", tmp_path / "out")
    t = result.transform
    assert abs(t.dy - 3.5) < 1.0 and abs(t.dx + 2.0) < 1.0 and abs(t.angle_deg - 3.0) < 1.0  # a small smooth field
    assert result.r_after > result.r_before and result.r_after > 0.95
    assert max(abs(v) for v in result.residual) < 0.5
    report = json.loads(result.report.read_text())
    assert report["transform"]["angle_deg"] == pytest.approx(t.angle_deg)
    assert read_image(result.aligned)[0].shape[-2:] == image.shape[-2:]


def test_max_displacement_is_the_worst_corner():
    from virtualstain.analysis.registration import Similarity
    from virtualstain.workflows.stain.registration_check import max_displacement

    assert max_displacement(Similarity(dy=3.0, dx=-4.0), (100, 100)) == pytest.approx(5.0)
    # a pure rotation by θ moves a corner at distance r by 2·r·sin(θ/2)
    r = np.hypot(49.5, 49.5)
    assert max_displacement(Similarity(angle_deg=1.0), (100, 100)) == pytest.approx(2 * r * np.sin(np.radians(0.5)))
    assert max_displacement(Similarity(scale=1.02), (101, 101)) == pytest.approx(0.02 * np.hypot(50, 50))


def test_train_check_registration_flags_the_shifted_pair(tmp_path):
    import csv
    import dataclasses

    from conftest import tiny_config

    from virtualstain.data.samples import read_manifest
    from virtualstain.data.synthetic import write_dataset
    from virtualstain.workflows.stain.train import train

    samples = read_manifest(write_dataset(tmp_path / "syn", n_fields=4, shape=(128, 128), seed=3, pixel_size_um=0.5), 2)
    samples[1] = dataclasses.replace(samples[1], target=np.roll(samples[1].target, (3, -2), axis=(1, 2)))
    lines: list[str] = []
    train(samples, tmp_path / "run", tiny_config(max_epochs=4), log=lines.append, check_registration=True)
    rows = list(csv.DictReader(open(tmp_path / "run" / "registration.csv", encoding="utf-8")))
    assert [r["misaligned"] for r in rows] == ["False", "True", "False", "False"]
    assert float(rows[1]["dy"]) == pytest.approx(3, abs=0.5) and float(rows[1]["dx"]) == pytest.approx(-2, abs=0.5)
    flagged = [line for line in lines if "misaligned with its label-free image" in line]
    assert len(flagged) == 1 and flagged[0].startswith(samples[1].source)
    assert any(line.startswith("registration: 1 of 4 pair(s) misaligned by more than 1 px") for line in lines)
