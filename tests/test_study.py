"""Training-size and epoch studies: subsets, one fixed test set, resumable table and plots."""

import csv
import json
import math

import numpy as np
import pytest
from conftest import tiny_config

from virtualstain.cli import main
from virtualstain.data.io import read_image
from virtualstain.data.samples import samples_from_arrays
from virtualstain.data.splits import Region, SplitPlan, plan_splits
from virtualstain.data.synthetic import make_field
from virtualstain.errors import UserError
from virtualstain.evaluation.study import StudyRow
from virtualstain.workflows.stain.study import region_samples, run_study, training_subset


def test_training_subsets_crop_one_field_or_choose_whole_fields():
    plan = SplitPlan([Region(0, "train", ((0, 100), (0, 300))), Region(0, "test", ((0, 100), (300, 400)))], "spatial", "")
    (half,) = training_subset(plan, 0.5, min_length=64)
    assert half.bounds == ((0, 100), (0, 150))  # cut along the longest axis, from its start
    (floor,) = training_subset(plan, 0.1, min_length=64)
    assert floor.bounds == ((0, 100), (0, 64))  # never less than one patch
    many = SplitPlan([Region(k, "train", ((0, 50), (0, 50))) for k in range(8)], "groups", "")
    chosen = training_subset(many, 0.25, seed=1)
    assert len(chosen) == 2 and all(r.shape == (50, 50) for r in chosen)
    assert chosen == training_subset(many, 0.25, seed=1)
    with pytest.raises(UserError, match=r"training fractions must lie in \(0, 1\], got 1.5"):
        training_subset(many, 1.5)


def test_region_samples_are_the_crops():
    f = make_field((64, 96), seed=2)
    samples = samples_from_arrays([f.input], [f.target])
    plan = plan_splits(samples)
    crops = region_samples(samples, plan.regions)
    assert [c.split for c in crops] == ["train", "val", "test"]
    for c, r in zip(crops, plan.regions):
        assert np.array_equal(c.input, f.input[r.slices()]) and c.name == f"array0_{r.split}"


def test_study_table_resume_and_page(tmp_path, capsys):
    f = make_field((96, 256), seed=6)
    samples = samples_from_arrays([f.input], [f.target])
    config = tiny_config()
    config.data.target_channel_names = ["nuclei", "membrane"]
    rows = run_study(samples, tmp_path / "study", config, fractions=[0.5, 1.0], epochs=[1, 2])
    assert len(rows) == 2 * 2 * 2  # fractions × epochs × channels
    by = {(r.fraction, r.epochs_requested, r.channel): r for r in rows}
    assert by[(0.5, 1, "nuclei")].train_megapixels < by[(1.0, 1, "nuclei")].train_megapixels
    assert by[(0.5, 2, "nuclei")].epochs == 2 and by[(0.5, 1, "nuclei")].epochs == 1
    assert by[(1.0, 2, "nuclei")].train_seconds > by[(1.0, 1, "nuclei")].train_seconds
    assert by[(1.0, 2, "nuclei")].count_error is not None
    judged = json.loads((tmp_path / "study" / "fraction_1" / "test" / "summary.json").read_text())["channels"]
    for channel in ("nuclei", "membrane"):  # the last step's test summary, as the study read it from memory
        row, entry = by[(1.0, 2, channel)], judged[channel]
        expected = [entry[k] for k in ("pearson_r_mean", "accuracy_score_p", "count_error_total", "f1_mean")]
        assert [row.pearson_r, row.accuracy_score_p, row.count_error, row.f1] == \
            pytest.approx([math.nan if v is None else v for v in expected], nan_ok=True)  # JSON null is NaN
    # every run is tested on the same held-out pixels
    t_half = read_image(tmp_path / "study" / "fraction_0.5" / "test" / "target" / "array0_test.tif")[0]
    t_full = read_image(tmp_path / "study" / "fraction_1" / "test" / "target" / "array0_test.tif")[0]
    assert t_half.shape == (2, 96, 64) and np.array_equal(t_half, t_full)
    with open(tmp_path / "study" / "study.csv", newline="") as fh:
        assert [repr(StudyRow.from_csv(cells)) for cells in csv.DictReader(fh)] == [repr(r) for r in rows]  # NaN-safe
    html = (tmp_path / "study" / "study.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # one figure per channel
    # rerunning skips finished steps; a new epoch count only trains what is missing
    before = (tmp_path / "study" / "fraction_1" / "model" / "weights.safetensors").stat().st_mtime_ns
    again = run_study(samples, tmp_path / "study", config, fractions=[0.5, 1.0], epochs=[1, 2])
    assert [repr(r) for r in again] == [repr(r) for r in rows]  # all 8 read back from study.csv, none rerun
    assert (tmp_path / "study" / "fraction_1" / "model" / "weights.safetensors").stat().st_mtime_ns == before


def test_study_command_rejects_bad_lists(tmp_path, synthetic_manifest, capsys):
    assert main(["study", str(synthetic_manifest), "--out", str(tmp_path / "s"), "--epochs", "two"]) == 2
    assert "--epochs: give numbers, e.g. 2,5,10" in capsys.readouterr().err
    assert main(["study", str(synthetic_manifest), "--out", str(tmp_path / "s"), "--epochs", "0"]) == 2
    assert "epoch counts must be ≥ 1, got 0" in capsys.readouterr().err
