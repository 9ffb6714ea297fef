"""Results stay in memory: train, study and demo judge the arrays they hold (no file read back, no
second prediction), and a region of a k× (super-resolution) sample pairs the same field in the target."""

from __future__ import annotations

import builtins
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

import virtualstain.inference.predict as inference_predict
from virtualstain.data.samples import samples_from_arrays
from virtualstain.data.splits import plan_splits
from virtualstain.data.synthetic import make_field
from virtualstain.inference.tiling import dihedral_transforms
from virtualstain.workflows.stain.demo import run_demo
from virtualstain.workflows.stain.study import region_samples, run_study, training_subset
from virtualstain.workflows.stain.train import train

K = 4


class Reads:
    """Every file opened for reading below ``folder`` while active (tifffile and csv use ``open``,
    ``Path.read_text`` uses ``io.open``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path):
        self.folder, self.paths = folder.resolve(), []
        original = builtins.open

        def spy(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, Path)) and "r" in mode and "+" not in mode:
                path = Path(file).resolve()
                if self.folder in path.parents:
                    self.paths.append(path)
            return original(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", spy)
        monkeypatch.setattr(io, "open", spy)


@pytest.fixture
def forward_passes(monkeypatch):
    """Count the network's whole-image (or tiled) forward passes of :func:`virtualstain.inference.predict.predict`."""
    calls = []
    original = inference_predict.predict_padded

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(inference_predict, "predict_padded", counting)
    return calls


def test_study_pairs_each_region_of_a_k_times_sample_with_the_same_field_of_its_target():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(1, 40, 56)).astype(np.float32)
    high = np.kron(low, np.ones((K, K), np.float32))  # target pixel (y, x) belongs to input pixel (y // K, x // K)
    samples = samples_from_arrays([low], [high], scale=K)
    plan = plan_splits(samples)
    regions = training_subset(plan, 0.5, min_length=8) + plan.of("val") + plan.of("test")
    crops = region_samples(samples, regions)
    assert len(crops) == 3 and crops[0].input[0].size < np.prod(plan.of("train")[0].shape)  # the subset is cut
    for crop, region in zip(crops, regions):
        assert crop.scale == K and crop.input.shape[1:] == region.shape
        assert np.array_equal(crop.target, np.kron(crop.input, np.ones((K, K), np.float32)))


def _classical_judge(monkeypatch):
    """The judge's learned segmenter runs networks too; these tests count the stain model's passes only."""
    from virtualstain.workflows.stain import nuclei_segmenter

    monkeypatch.setattr(nuclei_segmenter, "JUDGE_NUCLEI_METHOD", "classical")


def test_train_judges_its_test_regions_from_memory_and_predicts_each_once(tmp_path, monkeypatch, synthetic_manifest,
                                                                          forward_passes):
    _classical_judge(monkeypatch)
    reads = Reads(monkeypatch, tmp_path)
    result = train(synthetic_manifest, tmp_path / "run", tiny_config())
    test_dir = tmp_path / "run" / "test"
    assert sorted(p.name for p in (test_dir / "prediction").iterdir()) == [r.image for r in result.test_rows[::2]]
    assert not [p for p in reads.paths if test_dir in p.parents], reads.paths
    plan = json.loads((tmp_path / "run" / "splits.json").read_text())["regions"]
    n_val, n_test = (sum(r["split"] == s for r in plan) for s in ("val", "test"))
    # validation r, then each test region once; the σ calibration adds the 8 TTA passes over each of them
    assert len(forward_passes) == (n_val + n_test) * (1 + len(dihedral_transforms()))
    assert [h.name for h in result.held_out] == [Path(r.image).stem for r in result.test_rows[::2]]


def test_study_reads_no_summary_back(tmp_path, monkeypatch):
    f = make_field((96, 192), seed=6)
    samples = samples_from_arrays([f.input], [f.target])
    reads = Reads(monkeypatch, tmp_path)
    rows = run_study(samples, tmp_path / "study", tiny_config(), fractions=[1.0], epochs=[1])
    assert len(rows) == 2
    assert not [p for p in reads.paths if p.name == "summary.json" or p.suffix == ".tif"], reads.paths


def test_demo_predicts_the_test_regions_once(tmp_path, monkeypatch, forward_passes):
    _classical_judge(monkeypatch)
    reads = Reads(monkeypatch, tmp_path)
    summary = run_demo(tmp_path / "demo", epochs=1, progress=False)
    plan = json.loads((tmp_path / "demo" / "run" / "splits.json").read_text())["regions"]
    n_val, n_test = (sum(r["split"] == s for r in plan) for s in ("val", "test"))
    assert len(forward_passes) == (n_val + n_test) * (1 + len(dihedral_transforms()))  # + σ calibration's TTA
    written = [tmp_path / "demo" / "run" / "test", tmp_path / "demo" / "predictions"]  # predicted, never read back
    assert not [p for p in reads.paths if any(folder in p.parents for folder in written)], reads.paths
    predictions = sorted((tmp_path / "demo" / "predictions").glob("*.tif"))
    assert len(predictions) == n_test and summary.predictions == tmp_path / "demo" / "predictions"
