"""Nothing lost, nothing silent (issue 12): no command writes over one of its inputs, ``predict`` skips only
outputs this model and these options made, ``--out`` suffixes match what is written, a refused ``simulate``
leaves nothing that blocks the corrected rerun, and bad TIE planes / tiny holograms exit 2."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from virtualstain import optics
from virtualstain.cli import main
from virtualstain.data.io import read_image, write_labels, write_tiff
from virtualstain.data.phase_maps import write_phase_map
from virtualstain.data.synthetic import make_field
from virtualstain.errors import UserError

OVERWRITE = "--out would write over this input"


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def assert_unchanged(before: dict[Path, bytes]) -> None:
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"


def assert_no_parts(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".part" in p.name], "a half-written temporary file was left"


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def field_image(path: Path, seed: int = 0, shape=(64, 64)) -> Path:
    write_tiff(path, make_field(shape, seed=seed).input, pixel_size_um=0.5)
    return path


def holograms(n: int, m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    m = m or n
    yy, xx = np.indices((n, m))
    phase = np.exp(-((yy - n / 2) ** 2 + (xx - m / 2) ** 2) / (0.05 * n * m + 1))
    carrier = 2 * np.pi * (0.23 * xx + 0.19 * yy)
    return (1 + np.cos(carrier + phase)).astype(np.float32), (1 + np.cos(carrier)).astype(np.float32)


def tie_stack(path: Path, z=(-0.5, 0.5)) -> Path:
    yy, xx = np.indices((64, 64))
    truth = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) * 0.04 / 8.0)
    planes = np.abs(optics.propagate(np.exp(1j * truth), list(z), wavelength_um=0.5, pixel_size_um=0.2)) ** 2
    tifffile.imwrite(path, planes.astype(np.float32))
    return path


# --- 1. no command writes over one of its inputs ------------------------------------------------------------

def test_predict_refuses_to_write_over_its_inputs_even_with_overwrite(tmp_path, trained_run, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    a, b = field_image(folder / "a.tif", 0), field_image(folder / "b.tif", 1)
    before = snapshot(a, b)
    for extra in ([], ["--overwrite"]):
        assert main(["predict", str(trained_run.model_dir), str(a), str(b), "--out", str(folder), *extra]) == 2
        err = one_error(capsys)
        assert "a.tif: " + OVERWRITE in err and "choose another --out folder" in err
    link = tmp_path / "link"  # the same folder under another name
    link.symlink_to(folder, target_is_directory=True)
    assert main(["predict", str(trained_run.model_dir), str(a), "--out", str(link), "--overwrite"]) == 2
    assert OVERWRITE in one_error(capsys)
    # c.png would become c.tif (new), but its composite would be c.png: the input itself
    grey = (255 * (make_field((64, 64), seed=2).input[0] > 0.5)).astype(np.uint8)
    Image.fromarray(grey).save(folder / "c.png")
    before |= snapshot(folder / "c.png")
    assert main(["predict", str(trained_run.model_dir), str(folder / "c.png"), "--out", str(folder), "--composite"]) == 2
    assert "c.png: " + OVERWRITE in one_error(capsys)
    assert_unchanged(before)
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "b.tif", "c.png"]
    assert_no_parts(tmp_path)


def test_segment_refuses_its_image_folder_and_hard_links(tmp_path, capsys):
    img = field_image(tmp_path / "img.tif")
    before = snapshot(img)
    assert main(["segment", str(img), "--out", str(tmp_path)]) == 2
    assert "img.tif: " + OVERWRITE in one_error(capsys)
    out = tmp_path / "labels"
    out.mkdir()
    os.link(img, out / "img.tif")  # the output name is a hard link to the input
    assert main(["segment", str(img), "--out", str(out)]) == 2
    assert OVERWRITE in one_error(capsys)
    assert_unchanged(before)
    assert_no_parts(tmp_path)


def test_evaluate_refuses_an_out_whose_report_is_a_prediction(tmp_path, capsys):
    ev = tmp_path / "ev"
    ev.mkdir()
    field = make_field((48, 48), seed=0)
    write_tiff(ev / "report.html", field.target[:1])  # a prediction stored under the report's name…
    (tmp_path / "pred.tif").symlink_to(ev / "report.html")  # …and read through a link
    write_tiff(tmp_path / "target.tif", field.target[:1])
    before = snapshot(ev / "report.html", tmp_path / "target.tif")
    assert main(["evaluate", str(tmp_path / "pred.tif"), str(tmp_path / "target.tif"), "--out", str(ev)]) == 2
    assert "pred.tif: " + OVERWRITE in one_error(capsys)
    assert_unchanged(before)
    assert sorted(p.name for p in ev.iterdir()) == ["report.html"]
    assert_no_parts(tmp_path)


def test_focus_refuses_out_equal_to_the_stack(tmp_path, capsys):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.random.default_rng(0).random((3, 32, 32)).astype(np.float32))
    before = snapshot(stack)
    assert main(["focus", str(stack), "--out", str(stack)]) == 2
    assert "stack.tif: " + OVERWRITE in one_error(capsys)
    assert_unchanged(before)
    assert_no_parts(tmp_path)


def test_phase_commands_refuse_out_equal_to_any_input(tmp_path, capsys):
    holo, bg = holograms(64)
    tifffile.imwrite(tmp_path / "holo.tif", holo)
    tifffile.imwrite(tmp_path / "bg.tif", bg)
    frames = np.stack([1 + 0.5 * np.cos(np.indices((32, 32))[1] / 5 - k * np.pi / 2) for k in range(4)])
    tifffile.imwrite(tmp_path / "frames.tif", frames.astype(np.float32))
    stack = tie_stack(tmp_path / "stack.tif")
    before = snapshot(*tmp_path.iterdir())
    runs = [
        (["phase", "hologram", str(tmp_path / "holo.tif"), "--background", str(tmp_path / "bg.tif"),
          "--wavelength-um", "0.633", "--pixel-size-um", "0.1", "--out", str(tmp_path / "bg.tif")], "bg.tif"),
        (["phase", "hologram", str(tmp_path / "holo.tif"), "--wavelength-um", "0.633", "--pixel-size-um", "0.1",
          "--out", str(tmp_path / "holo.tif")], "holo.tif"),
        (["phase", "qlsi", str(tmp_path / "holo.tif"), "--reference", str(tmp_path / "bg.tif"), "--wavelength-um",
          "0.55", "--pitch-term-um", "10", "--out", str(tmp_path / "bg.tif")], "bg.tif"),
        (["phase", "shifting", str(tmp_path / "frames.tif"), "--out", str(tmp_path / "frames.tif")], "frames.tif"),
        (["phase", "tie", str(stack), "--z-um", "-0.5,0.5", "--wavelength-um", "0.5", "--pixel-size-um", "0.2",
          "--out", str(stack)], "stack.tif"),
    ]
    for argv, name in runs:
        assert main(argv) == 2, argv
        err = one_error(capsys)
        assert f"{name}: {OVERWRITE}" in err and "choose another --out file" in err, err
    assert_unchanged(before)
    assert_no_parts(tmp_path)


def test_drymass_refuses_a_growth_file_that_is_an_input(tmp_path, capsys):
    phase = optics.sphere_phase((48, 48), radius_um=2.0, delta_n=0.03, wavelength_um=0.55, pixel_size_um=0.1)
    write_tiff(tmp_path / "tl.tif", np.stack([phase, 1.1 * phase, 1.2 * phase])[:, None], pixel_size_um=0.1,
               description={"unit": "rad", "wavelength_um": 0.55})
    Image.fromarray((phase > 0).astype(np.uint8)).save(tmp_path / "mass_growth.png")  # the labels
    before = snapshot(tmp_path / "tl.tif", tmp_path / "mass_growth.png")
    assert main(["drymass", str(tmp_path / "tl.tif"), "--labels", str(tmp_path / "mass_growth.png"),
                 "--out", str(tmp_path / "mass.csv")]) == 2
    assert "mass_growth.png: " + OVERWRITE in one_error(capsys)
    assert_unchanged(before)
    assert not (tmp_path / "mass.csv").exists() and not (tmp_path / "mass_growth.csv").exists()
    assert_no_parts(tmp_path)


SIM = ["--wavelength-um", "0.55", "--pixel-size-um", "0.2", "--na", "0.4", "--defocus-um", "4"]


def sphere_map(path: Path, n: int = 64) -> Path:
    phase = optics.sphere_phase((n, n), radius_um=3.0, delta_n=0.03, wavelength_um=0.55, pixel_size_um=0.2)
    return write_phase_map(path, phase, wavelength_um=0.55, pixel_size_um=0.2, method="test")


def test_simulate_refuses_an_output_that_is_a_phase_map(tmp_path, capsys):
    truth = sphere_map(tmp_path / "sim" / "hr" / "cell_z4_s0.tif")  # a previous simulation's truth…
    (tmp_path / "cell.tif").symlink_to(truth)  # …given again through a link, with --out the same folder
    before = snapshot(truth)
    assert main(["simulate", str(tmp_path / "cell.tif"), *SIM, "--out", str(tmp_path / "sim")]) == 2
    assert "cell.tif: " + OVERWRITE in one_error(capsys)
    assert_unchanged(before)
    assert not (tmp_path / "sim" / "simulation.json").exists() and not (tmp_path / "sim" / "lr").exists()
    sphere_map(tmp_path / "a" / "cell.tif")
    sphere_map(tmp_path / "b" / "cell.tif")
    assert main(["simulate", str(tmp_path / "a" / "cell.tif"), str(tmp_path / "b" / "cell.tif"), *SIM,
                 "--out", str(tmp_path / "sim2")]) == 2
    assert "two phase maps" in one_error(capsys) and not (tmp_path / "sim2").exists()
    assert_no_parts(tmp_path)


# --- 2. predict skips only what this model and these options produced ---------------------------------------

def test_predict_skips_only_up_to_date_outputs(tmp_path, trained_run, capsys):
    a = field_image(tmp_path / "a.tif", 0)
    b = field_image(tmp_path / "b.tif", 1)
    out = tmp_path / "pred"
    model = str(trained_run.model_dir)
    before = snapshot(a, b)
    assert main(["predict", model, str(a), str(b), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"2 prediction(s) in {out}")
    meta = read_image(out / "a.tif")[1].description
    assert meta["model_sha256"] == json.loads((trained_run.model_dir / "model.json").read_text())["weights_sha256"]
    assert meta["source"] == "a.tif" and meta["tta"] is False and meta["match_brightness"] is False
    stamp = {p: (out / p).stat().st_mtime_ns for p in ("a.tif", "b.tif")}

    assert main(["predict", model, str(a), str(b), "--out", str(out)]) == 0  # nothing changed: both skipped
    assert f"2 prediction(s) in {out} (2 up to date, skipped)" in capsys.readouterr().out
    assert {p: (out / p).stat().st_mtime_ns for p in stamp} == stamp

    assert main(["predict", model, str(a), "--out", str(out), "--tta"]) == 0  # another option: redone
    text = capsys.readouterr().out
    assert "redid" in text and "other tta" in text and "(1 redone)" in text
    assert read_image(out / "a.tif")[1].description["tta"] is True
    assert main(["predict", model, str(a), "--out", str(out), "--tta", "--border", "none"]) == 0  # zeros at the edges
    assert "other border" in capsys.readouterr().out and read_image(out / "a.tif")[1].description["border"] == "none"

    (out / "b.tif").write_bytes(b"")  # a 0-byte file left by a crash
    write_tiff(out / "a.tif", np.zeros((2, 64, 64)), description={"model_sha256": "0" * 64, "source": "a.tif",
                                                                  "tta": False, "match_brightness": False,
                                                                  "input_channels": None})
    part = out / ".a.x1y2z3.part.tif"  # a temporary file of a killed run, an hour old
    part.write_bytes(b"half")
    os.utime(part, (time.time() - 3600,) * 2)
    assert main(["predict", model, str(a), str(b), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "made with another model" in text and "unreadable" in text and "(2 redone)" in text
    assert f"removed {part}" in text and not part.exists()
    assert read_image(out / "b.tif")[0].shape == (2, 64, 64)

    assert main(["predict", model, str(a), "--out", str(out), "--composite"]) == 0  # the PNG was missing
    text = capsys.readouterr().out
    assert "composite PNG missing" in text and (out / "a.png").stat().st_size > 0
    assert main(["predict", model, str(a), "--out", str(out), "--composite"]) == 0
    assert "(1 up to date, skipped)" in capsys.readouterr().out

    other = tmp_path / "other"  # another source with the same name
    other.mkdir()
    Image.fromarray((255 * (make_field((64, 64), seed=5).input[0] > 0.5)).astype(np.uint8)).save(other / "a.png")
    assert main(["predict", model, str(other / "a.png"), "--out", str(out)]) == 0
    assert "other source" in capsys.readouterr().out
    assert read_image(out / "a.tif")[1].description["source"] == "a.png"
    assert_unchanged(before)
    assert_no_parts(tmp_path)


# --- 3. --out suffixes say what is written -----------------------------------------------------------------

def test_out_suffix_must_match_what_is_written(tmp_path, capsys):
    frames = np.stack([1 + 0.5 * np.cos(np.indices((32, 32))[1] / 5 - k * np.pi / 2) for k in range(4)])
    tifffile.imwrite(tmp_path / "frames.tif", frames.astype(np.float32))
    phase = optics.sphere_phase((48, 48), radius_um=2.0, delta_n=0.03, wavelength_um=0.55, pixel_size_um=0.1)
    write_phase_map(tmp_path / "p.tif", phase, wavelength_um=0.55, pixel_size_um=0.1, method="test")
    write_labels(tmp_path / "labels.tif", (phase > 0).astype(np.uint16))
    before = snapshot(*tmp_path.iterdir())
    runs = [
        (["phase", "shifting", str(tmp_path / "frames.tif"), "--out", str(tmp_path / "x.png")], "x.png", ".tif"),
        (["focus", str(tmp_path / "frames.tif"), "--out", str(tmp_path / "x.png")], "x.png", ".tif"),
        (["drymass", str(tmp_path / "p.tif"), "--labels", str(tmp_path / "labels.tif"), "--out",
          str(tmp_path / "x.tif")], "x.tif", ".csv"),
    ]
    for argv, name, suffix in runs:
        assert main(argv) == 2, argv
        err = one_error(capsys)
        assert f"{name}: --out must end in {suffix}" in err and f"x{suffix}" in err, err
        assert not (tmp_path / name).exists()
    assert main(["phase", "shifting", str(tmp_path / "frames.tif"), "--out", str(tmp_path / "ok.TIFF")]) == 0
    assert_unchanged(before)
    assert_no_parts(tmp_path)


# --- 4. a refused simulate does not block the corrected rerun ----------------------------------------------

def test_simulate_checks_everything_before_writing_and_a_failed_run_does_not_block(tmp_path, capsys):
    cell = sphere_map(tmp_path / "cell.tif")
    small = sphere_map(tmp_path / "small.tif", n=3)  # smaller than the 4× binning
    before = snapshot(cell, small)
    out = tmp_path / "sim"
    assert main(["simulate", str(cell), str(small), *SIM, "--out", str(out)]) == 2
    assert "small.tif: a 3×3 px phase map is smaller than the 4× binning" in one_error(capsys) and not out.exists()
    bad = [(["--defocus-um", "nan"], "--defocus-um 'nan'"), (["--coherence", "nan"], "--coherence 'nan'"),
           (["--noise", "nan"], "--noise nan"), (["--defocus-um", "nan:4"], "finite")]
    for extra, message in bad:
        assert main(["simulate", str(cell), *SIM, "--out", str(out), *extra]) == 2, extra
        err = one_error(capsys)
        assert message in err and "finite" in err, err
        assert not out.exists()
    write_tiff(tmp_path / "deg.tif", np.degrees(np.ones((1, 64, 64))), pixel_size_um=0.2, description={"unit": "deg"})
    write_tiff(tmp_path / "big.tif", 180 * np.ones((1, 64, 64)) + np.eye(64), pixel_size_um=0.2)  # degrees, no unit
    for path, message in ((tmp_path / "deg.tif", "in 'deg'; give phase in radians"), (tmp_path / "big.tif", "not radians")):
        assert main(["simulate", str(path), *SIM, "--out", str(out)]) == 2
        assert message in one_error(capsys) and not out.exists()

    # a run that wrote simulation.json and then failed before its first pair
    out.mkdir()
    (out / "simulation.json").write_text(json.dumps({"settings": {"na": 0.9}, "pairs": []}))
    assert main(["simulate", str(cell), *SIM, "--out", str(out)]) == 0
    assert "1 pairs" in capsys.readouterr().out
    assert json.loads((out / "simulation.json").read_text())["settings"]["na"] == 0.4
    # with pairs on disk, other settings are refused (resuming would mix them)
    assert main(["simulate", str(cell), *SIM[:-1], "5", "--out", str(out)]) == 2
    assert "holds 1 pair(s) simulated with other settings" in one_error(capsys)
    assert_unchanged(before)
    assert_no_parts(tmp_path)


# --- 5. TIE planes and tiny holograms ----------------------------------------------------------------------

def test_tie_refuses_non_finite_and_near_equal_z(tmp_path, capsys):
    stack = tie_stack(tmp_path / "stack.tif")
    before = snapshot(stack)
    base = ["phase", "tie", str(stack), "--wavelength-um", "0.5", "--pixel-size-um", "0.2",
            "--out", str(tmp_path / "phase.tif")]
    for z, message in (("nan,1", "must be a finite number"), ("inf,1", "must be a finite number"),
                       ("1,1.0000001", "only 1e-07 µm apart; the TIE needs at least 0.0005 µm")):
        assert main([*base, "--z-um", z]) == 2, z
        assert message in one_error(capsys)
    assert main([*base, "--z-um", "-0.5,0.5"]) == 0  # the ordinary case still works
    phase, _ = read_image(tmp_path / "phase.tif")
    assert np.isfinite(phase).all() and np.abs(phase).max() < 5
    assert_unchanged(before)
    assert_no_parts(tmp_path)


@pytest.mark.parametrize("command", ["hologram", "qlsi"])
def test_tiny_holograms_exit_2_with_the_smallest_size(tmp_path, capsys, command):
    holo, ref = holograms(21)  # 22 × 22 px is the smallest that works (a 10 px background frame)
    tifffile.imwrite(tmp_path / "holo.tif", holo)
    tifffile.imwrite(tmp_path / "ref.tif", ref)
    before = snapshot(tmp_path / "holo.tif", tmp_path / "ref.tif")
    argv = {"hologram": ["phase", "hologram", str(tmp_path / "holo.tif"), "--background", str(tmp_path / "ref.tif"),
                         "--wavelength-um", "0.633", "--pixel-size-um", "0.1"],
            "qlsi": ["phase", "qlsi", str(tmp_path / "holo.tif"), "--reference", str(tmp_path / "ref.tif"),
                     "--wavelength-um", "0.55", "--pitch-term-um", "10"]}[command]
    assert main([*argv, "--out", str(tmp_path / "phase.tif")]) == 2
    assert "is 21×21 px; phase retrieval needs at least 22×22 px" in one_error(capsys)
    assert not (tmp_path / "phase.tif").exists()
    holo, ref = holograms(22, 40)
    tifffile.imwrite(tmp_path / "holo22.tif", holo)
    tifffile.imwrite(tmp_path / "ref22.tif", ref)
    argv = [a.replace("holo.tif", "holo22.tif").replace("ref.tif", "ref22.tif") for a in argv]
    assert main([*argv, "--out", str(tmp_path / "phase.tif")]) == 0
    assert_unchanged(before)
    assert_no_parts(tmp_path)


def test_an_out_file_that_is_an_existing_folder_is_refused(tmp_path, capsys):
    from virtualstain.workflows.phase.retrieve import focus_planes

    stack = 1 + 0.1 * np.random.default_rng(0).normal(size=(3, 1, 24, 24))
    write_tiff(tmp_path / "z.tif", stack.astype(np.float32), pixel_size_um=0.5)
    (tmp_path / "best.tif").mkdir()
    assert main(["focus", str(tmp_path / "z.tif"), "--out", str(tmp_path / "best.tif")]) == 2  # click: a directory
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(UserError, match="best.tif: is a folder, so no file can be written under this name"):
        focus_planes(tmp_path / "z.tif", 1, out=tmp_path / "best.tif")  # the Python API, through atomic_path
    assert not list(tmp_path.glob(".*part*")) and not list((tmp_path / "best.tif").iterdir())
