"""Judging predictions: analytic readouts, the input baseline, verdicts, the report, and bad input."""

import csv
import dataclasses
import json
import math
import shutil
import subprocess

import numpy as np
import pytest

import virtualstain as vs
from virtualstain.analysis import FEATURES
from virtualstain.analysis.readouts import readout_for
from virtualstain.cli import main
from virtualstain.data.io import write_tiff
from virtualstain.evaluation.types import ChannelSummary, ObjectSummary
from virtualstain.evaluation.verdicts import verdicts
from virtualstain.workflows.stain.evaluate import evaluate_files

#: The header of metrics.csv with a known pixel size, as written since before the typed rows (with VirFluoNet's
#: tolerance columns after the pixel scores since issue 15).
COLUMNS = ["image", "channel", "pearson_r", "segmentation_pcc", "ssim", "psnr", "nrmse", "mae", "data_range",
           "tolerance_level", "tolerance_threshold", "tolerance_intensity_error", "tolerance_spatial_error",
           "error_area_fraction", "baseline_pearson_r", "baseline_ssim", "baseline_nrmse", "readout", "count_target",
           "count_prediction", "count_error", "precision", "recall", "f1", "displacement_median_um", "area_ratio_median",
           "segmenter_agreement_f1", "note"]

CENTRES = [(20 + 40 * i, 20 + 40 * j) for i in range(2) for j in range(5)]  # 10 nuclei on a grid


def _disks(centres, shift_x=0, shape=(80, 200), radius=8.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 100.0)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx - shift_x) ** 2 <= radius ** 2] = 1100.0
    return image[None]


@pytest.fixture
def disk_pair(tmp_path):
    """Target: 10 disks. Prediction: 9 of them, shifted 2 px right (1 µm at 0.5 µm/px)."""
    write_tiff(tmp_path / "target.tif", _disks(CENTRES), pixel_size_um=0.5)
    write_tiff(tmp_path / "pred.tif", _disks(CENTRES[1:], shift_x=2), pixel_size_um=0.5, channel_names=["hoechst"])
    return tmp_path


def test_readouts_of_disks_are_the_analytic_values(disk_pair):
    ev = vs.evaluate([disk_pair / "pred.tif"], [disk_pair / "target.tif"], nuclei_method="classical")
    (row,) = ev.rows
    assert row.readout == "nuclei"
    o = row.objects
    assert (o.count_target, o.count_prediction) == (10, 9)
    assert o.count_error == pytest.approx(-0.1)
    assert (o.precision, o.recall, o.f1) == pytest.approx((1.0, 0.9, 18 / 19))
    assert o.displacement_median == pytest.approx(1.0, abs=1e-6)  # µm
    assert o.area_ratio_median == pytest.approx(1.0)
    s = ev.channels["hoechst"]
    assert s.objects.count_error_total == pytest.approx(-0.1) and s.objects.displacement_p90 == pytest.approx(1.0)
    assert ev.length_unit == "µm" and ev.pixel_size_um == pytest.approx(0.5)
    status = {v.readout: v.status for v in s.verdicts}
    assert status["counts"] == "caution"  # 10 % off, F1 0.95
    assert status["positions"] == "good" and status["areas"] == "good"
    text = {v.readout: v.text for v in s.verdicts}
    assert text["counts"].startswith("Nuclei counts within 10.0 % of the real stain (9 virtual vs 10 real; virtual "
                                     "undercounts)")
    assert "within 1.00 µm of the real ones" in text["positions"]


def test_outputs_csv_json_and_a_self_contained_report(disk_pair, tmp_path):
    out = tmp_path / "ev"
    (tmp_path / "inputs").mkdir()
    write_tiff(tmp_path / "inputs" / "pred.tif", -3.0 * _disks(CENTRES) + 7.0)  # an inverted, rescaled target
    assert main(["evaluate", str(disk_pair / "pred.tif"), str(disk_pair / "target.tif"), "--out", str(out),
                 "--inputs", str(tmp_path / "inputs"), "--segmenter", "classical"]) == 0  # inputs matched by name
    with open(out / "metrics.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert list(row) == COLUMNS
    assert float(row["baseline_pearson_r"]) == pytest.approx(1.0) and float(row["baseline_nrmse"]) < 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["channels"]["hoechst"]["count_target_total"] == 10
    features = summary["channels"]["hoechst"]["feature_pearson_r"]
    assert set(features) == set(FEATURES) and features["area"] is None  # equal disks: constant area, r undefined
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # violin, histogram, counts, distributions, panels
    assert "http://" not in html and "https://" not in html and "<script" not in html  # opens offline
    assert "Nuclei counts within 10.0 %" in html and "so the model adds -0.23" in html
    assert oct((out / "report.html").stat().st_mode & 0o077) != "0o0"  # not left private by mkstemp


def test_all_zero_target_is_not_defined_and_the_report_still_renders(tmp_path, capsys):
    write_tiff(tmp_path / "zero.tif", np.zeros((1, 64, 64)))
    write_tiff(tmp_path / "pred.tif", _disks(CENTRES[:2], shape=(64, 64)), channel_names=["dapi"])
    assert main(["evaluate", str(tmp_path / "pred.tif"), str(tmp_path / "zero.tif"), "--out", str(tmp_path / "ev")]) == 0
    printed = capsys.readouterr().out
    assert "not defined: the target is constant; count error not defined: no nuclei found in the target" in printed
    assert "[n/a ] dapi intensity: Pearson r is not defined" in printed
    assert "[n/a ] dapi counts: No nuclei were found in the real dapi stain" in printed
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["channels"]["dapi"]["pearson_r_mean"] is None  # JSON null, not NaN
    assert "not defined" in (tmp_path / "ev" / "report.html").read_text()


def test_bad_input_fails_before_anything_is_written(tmp_path, disk_pair, capsys):
    out = tmp_path / "ev"
    write_tiff(tmp_path / "small.tif", np.ones((1, 20, 20)))
    nan = _disks(CENTRES)
    nan[0, 3, 3] = np.nan
    write_tiff(tmp_path / "nan.tif", nan)
    cases = [
        ([str(disk_pair / "pred.tif"), str(disk_pair / "pred.tif"), str(disk_pair / "target.tif")],
         "as many targets as predictions (PRED... TARGET...), got 3 paths"),
        ([str(disk_pair / "pred.tif"), str(tmp_path / "small.tif")], "has shape (1, 80, 200) but target"),
        ([str(disk_pair / "pred.tif"), str(tmp_path / "nan.tif")], "nan.tif contains NaN or infinite pixels"),
        ([str(disk_pair / "pred.tif"), str(disk_pair / "target.tif"), "--inputs", str(tmp_path / "small.tif")],
         "has spatial shape (20, 20) but prediction"),
        ([str(disk_pair / "pred.tif"), str(disk_pair / "target.tif"), "--readout", "dapi=nuclei"],
         "readout given for channel 'dapi' but the predictions' channels are hoechst"),
        ([str(disk_pair / "pred.tif"), str(disk_pair / "target.tif"), "--readout", "hoechst=blobs"],
         "must be one of nuclei, cells, none, got 'blobs'"),
        ([str(disk_pair / "pred.tif"), str(tmp_path / "missing.tif")], "missing.tif"),
    ]
    for args, message in cases:
        assert main(["evaluate", *args, "--out", str(out)]) == 2, message
        assert message in capsys.readouterr().err
    # a good first pair and a bad second one: no half-written report
    with pytest.raises(vs.UserError, match="2 prediction file"):
        vs.evaluate([disk_pair / "pred.tif", disk_pair / "pred.tif"], [disk_pair / "target.tif"], out=out)
    with pytest.raises(vs.UserError, match="NaN"):
        vs.evaluate([disk_pair / "pred.tif", disk_pair / "pred.tif"], [disk_pair / "target.tif", tmp_path / "nan.tif"],
                    out=out)
    assert not out.exists() or not any(out.iterdir())


def test_readout_choice_by_channel_name():
    assert [readout_for(n) for n in ("DAPI", "hoechst", "Nuclei", "dna", "ZO-1", "membrane", "E-cadherin", "MAP2")] == \
        ["nuclei"] * 4 + ["cells"] * 3 + ["none"]


def _statuses(items) -> dict[str, str]:
    return {v.readout: v.status for v in items}


def test_verdict_thresholds():
    nan = math.nan
    objects = ObjectSummary(count_target_total=200, count_prediction_total=208, count_error_total=0.04,
                            count_error_abs_mean=nan, f1_mean=0.9, matched=180, displacement_median=1.5,
                            displacement_p90=3.0, area_target_median=100.0, area_prediction_median=70.0,
                            area_ratio_median=0.7, feature_pearson_r={})
    base = ChannelSummary(n_images=4, readout="nuclei", pearson_r_mean=nan, pearson_r_median=0.85, accuracy_score_p=0.84,
                          p_images_with_signal=4, segmentation_pcc_mean=nan, ssim_mean=0.4, psnr_mean=nan,
                          nrmse_mean=0.1, mae_mean=nan, baseline_pearson_r_mean=0.3, baseline_ssim_mean=nan,
                          objects=objects)
    got = _statuses(verdicts("dapi", base))
    assert got == {"intensity": "good", "structure": "poor", "counts": "good", "positions": "caution", "areas": "poor"}
    assert _statuses(verdicts("dapi", base, unit="px"))["positions"] == "good"  # 2 px rule
    worse = dataclasses.replace(base, pearson_r_median=0.5,
                                objects=dataclasses.replace(objects, count_error_total=-0.2))
    got = _statuses(verdicts("dapi", worse))
    assert got["intensity"] == "poor" and got["counts"] == "poor"
    no_objects = dataclasses.replace(base, readout="none", objects=None)
    assert [v.readout for v in verdicts("map2", no_objects)] == ["intensity", "structure"]
    assert verdicts("x", dataclasses.replace(base, pearson_r_median=math.nan))[0].status == "undefined"


def _read_csv(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_length_keys_follow_the_unit(disk_pair, tmp_path):
    """Lengths are µm with a pixel size and px without; the column and key names say which."""
    write_tiff(tmp_path / "target_px.tif", _disks(CENTRES))  # no pixel size recorded
    write_tiff(tmp_path / "pred_px.tif", _disks(CENTRES[1:], shift_x=2), channel_names=["hoechst"])
    cases = [(disk_pair / "pred.tif", disk_pair / "target.tif", "um", 1.0),
             (tmp_path / "pred_px.tif", tmp_path / "target_px.tif", "px", 2.0)]
    for pred, target, unit, shift in cases:
        out = tmp_path / f"ev_{unit}"
        ev = evaluate_files([pred], [target], out, nuclei_method="classical")
        assert ev.length_unit == {"um": "µm", "px": "px"}[unit]
        assert ev.channels["hoechst"].objects.displacement_median == pytest.approx(shift)  # 2 px = 1 µm at 0.5 µm/px
        header, (row,) = _read_csv(out / "metrics.csv")
        assert header == [c.replace("_um", f"_{unit}") for c in COLUMNS]
        assert float(row[f"displacement_median_{unit}"]) == pytest.approx(shift)
        summary = json.loads((out / "summary.json").read_text())["channels"]["hoechst"]
        assert summary[f"displacement_median_{unit}"] == pytest.approx(shift)
        assert summary[f"displacement_p90_{unit}"] == pytest.approx(shift)
        assert f"area_target_median_{unit}2" in summary and f"area_prediction_median_{unit}2" in summary
        other = {"um": "_px", "px": "_um"}[unit]
        assert not [k for k in [*header, *summary] if other in k]


def test_the_files_are_the_typed_evaluation(disk_pair, tmp_path):
    """``metrics.csv`` and ``summary.json`` hold exactly what the Evaluation's csv_rows / summary_dict say."""
    write_tiff(tmp_path / "flat.tif", np.zeros((1, 80, 200)), channel_names=["hoechst"])  # r, SSIM not defined
    preds, targets = [disk_pair / "pred.tif", tmp_path / "flat.tif"], [disk_pair / "target.tif"] * 2
    for readout in ("nuclei", "none"):  # with and without the object columns
        out = tmp_path / readout
        ev = evaluate_files(preds, targets, out, readouts={"hoechst": readout})
        header, rows = _read_csv(out / "metrics.csv")
        assert header == ev.csv_columns() == COLUMNS
        assert rows == [{c: "" if r.get(c) is None else str(r[c]) for c in header} for r in ev.csv_rows()]
        assert json.loads((out / "summary.json").read_text()) == ev.summary_dict()
        entry = ev.summary_dict()["channels"]["hoechst"]
        assert entry["verdicts"] == [dataclasses.asdict(v) for v in ev.channels["hoechst"].verdicts]
        assert ("count_target_total" in entry) == (readout == "nuclei") == (rows[0]["count_target"] != "")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(disk_pair, tmp_path):
    from PIL import Image

    out = tmp_path / "ev"
    vs.evaluate([disk_pair / "pred.tif"], [disk_pair / "target.tif"], out=out)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1200,1600", f"--screenshot={shot}", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"), float)
    assert pixels.shape[:2] == (1600, 1200)
    greenish = (pixels[..., 1] > pixels[..., 0] + 5) & (pixels[..., 1] > 200)  # the verdict boxes' backgrounds
    assert greenish.mean() > 0.005 and pixels.std() > 20  # not a blank page
