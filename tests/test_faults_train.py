"""Training survives faults with early stopping ON (the default): kill -9, SIGINT and SIGTERM resume losing at
most the epoch in progress, a finished run reruns as a no-op, damaged or unwritable checkpoints give exit 2."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from conftest import tiny_config

from virtualstain.cli import main
from virtualstain.data.io import read_image, write_tiff
from virtualstain.data.samples import samples_from_arrays
from virtualstain.data.synthetic import make_field
from virtualstain.workflows.stain.study import run_study

#: Early stopping on, as by default; a patience the tiny run never exhausts, so that signals find it training.
CONFIG = {"model": {"architecture": "pics", "depth": 2, "base_width": 4}, "data": {"patch_size": [32, 32]},
          "training": {"max_epochs": 400, "patches_per_epoch": 8, "batch_size": 4, "progress_bar": False,
                       "early_stopping_patience": 400}}


def _config(tmp_path: Path, **training) -> Path:
    data = json.loads(json.dumps(CONFIG))
    data["training"].update(training)
    path = tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _epochs(last: Path) -> int:
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) + 1


def _interrupt(manifest: Path, run: Path, config: Path, signum: int) -> tuple[int, int, str]:
    """Start `train` in a new process, wait for two saved epochs, send ``signum``; (exit code, saved epochs, stderr)."""
    cmd = [sys.executable, "-c", "import sys; from virtualstain.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", str(manifest), "--out", str(run), "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and _epochs(last) >= 2):
        time.sleep(0.1)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, _epochs(last), err


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_train_interrupted_by_a_signal_resumes_with_default_early_stopping(tmp_path, synthetic_manifest, signum, code):
    run, config = tmp_path / "run", _config(tmp_path)
    returncode, saved, err = _interrupt(synthetic_manifest, run, config, signum)
    assert returncode == code
    if signum != signal.SIGKILL:
        assert f"interrupted: training interrupted by {signal.Signals(signum).name} after {saved} complete epoch(s)" \
               in err and "rerun the same command to resume" in err
    assert not (run / "model").exists() and not (run / "summary.json").exists()  # no model claimed
    if signum != signal.SIGKILL:  # a graceful stop finishes the file it writes; kill -9 may leave a .part…
        assert not list(run.rglob("*.part"))
    more = _config(tmp_path, max_epochs=saved + 2)  # the budget may change between resumes
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(more)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert summary["epochs"] == saved + 2 and summary["stop_reason"] == "max_epochs"  # continued, not restarted
    assert not list(run.rglob("*.part"))  # …which the resume removes: nothing half-written is kept


def test_a_finished_run_reruns_as_a_no_op_and_trains_on_when_the_budget_grows(tmp_path, synthetic_manifest, capsys):
    run, config = tmp_path / "run", _config(tmp_path, max_epochs=3, early_stopping_patience=15)
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config)]) == 0
    model_json = run / "model" / "model.json"
    stamp = model_json.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{run}: this run already finished (3 epochs, max_epochs); nothing to do" in out
    assert model_json.stat().st_mtime_ns == stamp  # nothing trained or written again
    longer = _config(tmp_path, max_epochs=5, early_stopping_patience=15)
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(longer)]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 5


def test_a_run_on_other_data_is_not_resumed_into(tmp_path, synthetic_manifest, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_manifest.parent, data)
    manifest = data / synthetic_manifest.name
    run, config = tmp_path / "run", _config(tmp_path, max_epochs=1)
    assert main(["train", str(manifest), "--out", str(run), "--config", str(config)]) == 0
    first_input = data / next(csv.DictReader(manifest.open()))["input"]
    image, _ = read_image(first_input)
    write_tiff(first_input, image.reshape(1, *image.shape[-2:])[:, ::-1].copy())  # the same file name, other pixels
    more = _config(tmp_path, max_epochs=2)
    capsys.readouterr()
    assert main(["train", str(manifest), "--out", str(run), "--config", str(more)]) == 2
    assert f"{run}: holds a run on other data" in capsys.readouterr().err
    assert main(["train", str(manifest), "--out", str(run), "--config", str(config)]) == 2  # not "finished" either


def test_a_damaged_checkpoint_is_refused_with_the_fix(tmp_path, synthetic_manifest, capsys):
    run, config = tmp_path / "run", _config(tmp_path, max_epochs=1)
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config)]) == 0
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated (e.g. by a crash of another program)
    more = _config(tmp_path, max_epochs=2)
    capsys.readouterr()
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(more)]) == 2
    err = capsys.readouterr().err
    assert f"{last}: damaged checkpoint" in err and "pass --fresh" in err
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(more), "--fresh"]) == 0


def test_a_full_disk_while_saving_a_checkpoint_exits_2_and_leaves_the_previous_one_whole(tmp_path, synthetic_manifest,
                                                                                        monkeypatch, capsys):
    run, config = tmp_path / "run", _config(tmp_path, max_epochs=2)
    original = torch.save
    calls = []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) > 2:  # the first epoch's best and last checkpoints fit, then the disk is full
            if isinstance(f, (str, os.PathLike)):  # our best.ckpt (Lightning saves last.ckpt through a buffer)
                Path(f).write_bytes(b"\0" * 10)  # a partial write…
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "could not save the training state" in err and "free disk space, then rerun the same command" in err
    assert not list(run.rglob("*.part"))  # …never left behind
    assert _epochs(run / "checkpoints" / "last.ckpt") == 1  # the previous checkpoint is complete
    assert not (run / "model").exists()
    monkeypatch.setattr(torch, "save", original)
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(config)]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_a_study_stopped_between_a_finished_training_and_its_table_row_resumes_without_retraining(tmp_path):
    field = make_field((96, 192), seed=6)
    samples = samples_from_arrays([field.input], [field.target])
    config = tiny_config()
    config.data.target_channel_names = ["nuclei", "membrane"]
    rows = run_study(samples, tmp_path / "study", config, fractions=[1.0], epochs=[1, 2])
    table = tmp_path / "study" / "study.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(line for line in lines if ",2,2," not in line) + "\n")  # as if killed before the row
    assert len(table.read_text().splitlines()) == len(lines) - 2  # both channels' rows of the 2-epoch step are gone
    model = tmp_path / "study" / "fraction_1" / "model" / "model.json"
    stamp = model.stat().st_mtime_ns
    again = run_study(samples, tmp_path / "study", config, fractions=[1.0], epochs=[1, 2])
    assert model.stat().st_mtime_ns == stamp  # the finished run was judged, not trained again
    key = [(r.fraction, r.epochs_requested, r.channel, r.epochs) for r in again]
    assert key == [(r.fraction, r.epochs_requested, r.channel, r.epochs) for r in rows]
    assert [r.pearson_r for r in again] == pytest.approx([r.pearson_r for r in rows])


def test_a_bad_config_is_refused_before_torch_loads(tmp_path, synthetic_manifest):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lr: -1\n")
    code = ("import sys\nfrom virtualstain.cli import main\n"
            f"assert main(['train', r'{synthetic_manifest}', '--out', r'{tmp_path / 'r'}', '--config', r'{bad}']) == 2\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bad.yaml: training.lr: Input should be greater than 0" in done.stderr


def _run_until(cmd: list[str], ready, timeout: float = 120) -> int:
    """Run ``cmd`` in a new process group, kill -9 it once ``ready()`` holds; the exit code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


CLI = [sys.executable, "-c", "import sys; from virtualstain.cli import main; sys.exit(main(sys.argv[1:]))"]


def test_predict_killed_mid_batch_resumes_with_the_finished_outputs_kept(tmp_path, trained_run, capsys):
    images = []
    for k in range(16):  # ≈ 40 ms each on 2 CPU cores: the kill comes a few files after the second
        images.append(write_tiff(tmp_path / "in" / f"f{k:02d}.tif",
                                 make_field((256, 256), seed=k).input.astype("float32"), pixel_size_um=0.5))
    out = tmp_path / "out"
    cmd = [*CLI, "predict", str(trained_run.model_dir), *map(str, images), "--out", str(out)]
    assert _run_until(cmd, lambda: len(list(out.glob("f*.tif"))) >= 2) == -9
    done = sorted(out.glob("f*.tif"))
    assert 2 <= len(done) < 16, len(done)
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    assert main(["predict", str(trained_run.model_dir), *map(str, images), "--out", str(out)]) == 0
    assert f"({len(done)} up to date, skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("f*.tif")) == [p.name for p in images]
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in done)  # finished outputs were kept, not redone


def test_simulate_killed_midway_resumes_to_the_same_pairs(tmp_path):
    args = ["simulate", "--synthetic", "6", "--defocus-um", "2:3", "--wavelength-um", "0.55", "--pixel-size-um",
            "0.65", "--na", "0.25"]
    out = tmp_path / "sim"
    assert _run_until([*CLI, *args, "--out", str(out)], lambda: len(list(out.glob("hr/*.tif"))) >= 2) == -9
    assert not (out / "manifest.csv").exists() and len(list(out.glob("hr/*.tif"))) < 12
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0  # never interrupted
    for name in ("lr", "hr"):
        for path in sorted((tmp_path / "whole" / name).glob("*.tif")):
            assert np.array_equal(read_image(out / name / path.name)[0], read_image(path)[0])
    assert (out / "manifest.csv").read_text() == (tmp_path / "whole" / "manifest.csv").read_text()


def test_a_full_disk_while_predicting_exits_2_and_leaves_no_part_file(tmp_path, trained_run, monkeypatch, capsys):
    image = write_tiff(tmp_path / "a.tif", make_field((64, 64), seed=1).input.astype("float32"))
    original = tifffile.imwrite

    def full_disk(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\0")  # a partial write…
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(tifffile, "imwrite", full_disk)
    assert main(["predict", str(trained_run.model_dir), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the disk is full (No space left on device); free space or choose another --out" in err
    assert not list((tmp_path / "out").iterdir())  # neither the output nor its temporary file
    monkeypatch.setattr(tifffile, "imwrite", original)


def test_train_prints_no_lightning_advertising_or_resume_notes(tmp_path, synthetic_manifest):
    run = tmp_path / "run"
    for epochs in (1, 2):  # the second run resumes into a non-empty folder
        config = _config(tmp_path, max_epochs=epochs)
        done = subprocess.run([*CLI, "train", str(synthetic_manifest), "--out", str(run), "--config", str(config)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        for noise in ("litlogger", "Tip", "exists and is not empty", "LeafSpec"):
            assert noise not in done.stderr


def test_the_early_stopping_patience_may_change_between_resumes(tmp_path, synthetic_manifest):
    from virtualstain.training.lightning_module import EarlyStoppingAsConfigured

    run = tmp_path / "run"
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config",
                 str(_config(tmp_path, max_epochs=1, early_stopping_patience=15))]) == 0
    off = _config(tmp_path, max_epochs=2, early_stopping_patience=None)  # the way out the issue asked for
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(off)]) == 0
    longer = _config(tmp_path, max_epochs=3, early_stopping_patience=40)
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(longer)]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    stopper = EarlyStoppingAsConfigured(monitor="val_loss", patience=40)
    stopper.load_state_dict({"wait_count": 15, "stopped_epoch": 9, "best_score": torch.tensor(0.5), "patience": 15})
    assert stopper.patience == 40 and stopper.wait_count == 15  # the saved count, the configured patience
