"""Streaming: the stages overlap, incomplete files are never read, bad files are skipped, restarts go on, Ctrl-C is clean."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from virtualstain.errors import UserError
from virtualstain.inference.streaming import run_stream, stream
from virtualstain.models.bundle import load_bundle
from virtualstain.workflows.stain.watch import WatchSettings, complete_files, is_candidate, watch_folder


def test_reading_computing_and_writing_overlap():
    """Each stage sleeps 0.1 s per frame: in sequence 8 frames take 2.4 s, overlapped about 1 s."""
    def read(i):
        time.sleep(0.1)
        return f"f{i}", np.full((1, 4, 4), i, np.float32), None

    def compute(array, _):
        time.sleep(0.1)
        return array * 2

    written = []

    def write(name, prediction, _):
        time.sleep(0.1)
        written.append((name, float(prediction.mean())))

    report = run_stream(range(8), read, compute, write)
    assert written == [(f"f{i}", 2.0 * i) for i in range(8)]  # every frame, in order
    busy = report.stage_seconds()
    assert sum(busy.values()) > 2.3 and report.wall_s < 0.75 * sum(busy.values())
    overlap = report.overlap_seconds()
    assert overlap["read+compute"] > 0.3 and overlap["compute+write"] > 0.3
    assert report.frames_per_second() > 5
    assert "frames/s sustained" in report.summary()[0]


def test_a_frame_that_cannot_be_read_or_predicted_is_skipped_and_the_rest_go_on():
    def read(i):
        if i == 1:
            raise UserError("frame 1: damaged")
        return f"f{i}", np.zeros((3 if i == 3 else 1, 2, 2), np.float32), None

    def compute(array, _):
        if array.shape[0] != 1:
            raise UserError("3 channels, the model takes 1")
        return array

    out = []
    report = run_stream(range(4), read, compute, lambda name, p, _: out.append(name))
    assert out == ["f0", "f2"] and report.skipped == [("1", "frame 1: damaged"), ("f3", "3 channels, the model takes 1")]


def test_a_failing_writer_stops_the_stream_with_its_error():
    def write(name, prediction, _):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        run_stream(range(50), lambda i: (str(i), np.zeros(1), None), lambda a, _: a, write)


def test_stream_from_python_equals_predict(trained_run):
    from virtualstain.inference.predict import predict

    bundle = load_bundle(trained_run.model_dir)
    rng = np.random.default_rng(0)
    frames = [rng.random((1, 40, 48)).astype(np.float32) for _ in range(3)]
    got = {}
    report = stream(bundle, frames, lambda name, p: got.__setitem__(name, p))
    assert sorted(got) == ["frame_00000", "frame_00001", "frame_00002"] and len(report.frames) == 3
    for i, frame in enumerate(frames):
        assert np.array_equal(got[f"frame_{i:05d}"], predict(bundle, frame))


def test_only_complete_files_are_yielded(tmp_path):
    clock = [0.0]

    def sleep(s):
        clock[0] += s

    settings = WatchSettings(poll_s=0.25, settle_s=0.5, idle_exit_s=3.0)
    growing = tmp_path / "b.tif"
    growing.write_bytes(b"x" * 10)
    (tmp_path / ".c.tif").write_bytes(b"hidden")
    (tmp_path / "d.tif.part").write_bytes(b"being copied")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "a.tif").write_bytes(b"y" * 10)
    seen = []
    for path in complete_files(tmp_path, settings, clock=lambda: clock[0], sleep=sleep):
        seen.append((path.name, clock[0]))
        if path.name == "a.tif":  # the microscope keeps writing b.tif: it grows at this moment
            with open(growing, "ab") as f:
                f.write(b"more")
            os.utime(growing, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    names = [n for n, _ in seen]
    assert names == ["a.tif", "b.tif"]
    assert seen[1][1] >= seen[0][1] + 0.5  # b.tif waited a full settle time after it last changed
    assert not is_candidate(tmp_path / "x.tmp") and is_candidate(tmp_path / "X.OME.TIFF")


def _inbox(tmp_path, frames: int, shape: tuple[int, int], seed: int):
    """An inbox of ``frames`` random float32 TIFFs ``t00.tif``…, and the output folder's path."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(frames):
        tifffile.imwrite(inbox / f"t{i:02d}.tif", rng.random(shape).astype(np.float32))
    return inbox, tmp_path / "out", rng


def test_watch_predicts_skips_bad_files_and_a_restart_skips_what_is_done(trained_run, tmp_path):
    inbox, out, rng = _inbox(tmp_path, 3, (40, 48), seed=0)
    (inbox / "broken.tif").write_bytes(b"II*\x00garbage")
    (inbox / "empty.tif").write_bytes(b"")  # stays empty: read once settled, reported, not waited for forever
    tifffile.imwrite(inbox / "rgb.tif", rng.random((3, 40, 48)).astype(np.float32))  # channels the model lacks
    (inbox / "folder.tif").mkdir()
    lines: list[str] = []
    settings = WatchSettings(poll_s=0.05, settle_s=0.1, once=True)
    report = watch_folder(trained_run.model_dir, inbox, out, settings=settings, log=lines.append)
    assert sorted(p.name for p in out.glob("*.tif")) == ["t00.tif", "t01.tif", "t02.tif"]
    assert sorted(name for name, _ in report.skipped) == [str(inbox / "broken.tif"), str(inbox / "empty.tif"), "rgb.tif"]
    assert any(line.startswith(f"skipped {inbox / 'broken.tif'}:") for line in lines)
    assert any("frames/s sustained" in line for line in lines) and any(line.startswith("overlapping: ") for line in lines)
    lines.clear()
    again = watch_folder(trained_run.model_dir, inbox, out, settings=settings, log=lines.append)
    assert not again.frames and "3 already predicted by this model with these options, skipped" in lines
    with pytest.raises(UserError, match="--out is the inbox"):
        watch_folder(trained_run.model_dir, inbox, inbox, settings=settings)


def test_ctrl_c_stops_watch_with_every_written_file_complete(trained_run, tmp_path):
    inbox, out, _ = _inbox(tmp_path, 40, (96, 96), seed=1)
    cmd = [sys.executable, "-c", "import sys; from virtualstain.cli import main; sys.exit(main(sys.argv[1:]))",
           "watch", str(trained_run.model_dir), str(inbox), "--out", str(out), "--settle", "0.05",
           "--backend", "torch", "--precision", "fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("t*.tif"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "every written file is complete" in err
    written = sorted(out.glob("t*.tif"))
    assert 3 <= len(written) < 40 and not list(out.glob(".*"))  # stopped early, no temporary file left
    channels = len(load_bundle(trained_run.model_dir).output_channel_names)
    for path in written:
        assert tifffile.imread(path).shape == (channels, 96, 96)


def test_watch_checks_each_frame_against_the_training_domain(trained_run, tmp_path):
    from virtualstain.data.io import read_image
    from virtualstain.inference.domain_check import UnfamiliarInputWarning

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    field = tifffile.imread(sorted((trained_run.run_dir / "test" / "input").glob("*.tif"))[0]).astype(np.float32)
    tifffile.imwrite(inbox / "t00.tif", field)
    tifffile.imwrite(inbox / "t01.tif", 3 * field)  # a 3× gain: outside in every tile
    settings = WatchSettings(poll_s=0.05, settle_s=0.1, once=True)
    with pytest.warns(UnfamiliarInputWarning, match=r"t01.tif: unlike the model's training images in 4 of 4 tiles"):
        watch_folder(trained_run.model_dir, inbox, out, settings=settings, log=lambda line: None)
    assert read_image(out / "t01.tif")[1].description["ood_outside"] == 1.0
    assert 0 <= read_image(out / "t00.tif")[1].description["ood_outside"] <= 0.5
