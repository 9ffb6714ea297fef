"""The command line end to end: train → predict → evaluate → info, exit codes, resume, DDP."""

import json

import numpy as np
import pytest
import yaml

from virtualstain.cli import main
from virtualstain.data.io import read_image, write_tiff

TINY_YAML = {
    "model": {"architecture": "pics", "depth": 2, "base_width": 4},
    "data": {"patch_size": [32, 32]},
    "training": {"max_epochs": 2, "patches_per_epoch": 8, "batch_size": 4, "progress_bar": False,
                 "early_stopping_patience": None, "warmup_fraction": 0.0},
}


def _config(tmp_path, **training):
    data = json.loads(json.dumps(TINY_YAML))
    data["training"].update(training)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_predict_evaluate_info_end_to_end(tmp_path, synthetic_manifest, capsys):
    run = tmp_path / "run"
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "validation r [nuclei]" in out and "split: 3 groups shuffled" in out
    for name in ("model/model.json", "model/weights.safetensors", "log/metrics.csv", "splits.json", "summary.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "test/metrics.csv"):
        assert (run / name).exists(), name
    inputs = sorted((synthetic_manifest.parent / "input").glob("*.tif"))
    pred_dir = tmp_path / "pred"
    assert main(["predict", str(run / "model"), *map(str, inputs), "--out", str(pred_dir), "--composite"]) == 0
    pred, meta = read_image(pred_dir / inputs[0].name)
    assert pred.shape == (2, 96, 96) and meta.channel_names == ["nuclei", "membrane"]
    assert meta.pixel_size_um == pytest.approx(0.5)
    assert (pred_dir / inputs[0].name).with_suffix(".png").exists()
    target, _ = read_image(synthetic_manifest.parent / "nuclei" / inputs[0].name)
    assert target.min() < pred[0].mean() < target.max()  # in target units (counts), not z-scores (4 steps: untrained)
    # rerun skips finished outputs; --overwrite redoes them
    before = (pred_dir / inputs[0].name).stat().st_mtime_ns
    assert main(["predict", str(run / "model"), str(inputs[0]), "--out", str(pred_dir)]) == 0
    assert (pred_dir / inputs[0].name).stat().st_mtime_ns == before
    assert main(["predict", str(run / "model"), str(inputs[0]), "--out", str(pred_dir), "--overwrite",
                 "--tile-size", "48", "--tta"]) == 0
    assert (pred_dir / inputs[0].name).stat().st_mtime_ns != before
    capsys.readouterr()
    tgt = f"{synthetic_manifest.parent / 'nuclei' / inputs[0].name};{synthetic_manifest.parent / 'membrane' / inputs[0].name}"
    assert main(["evaluate", str(pred_dir / inputs[0].name), tgt, "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "nuclei intensity: Pixel intensities follow the real nuclei stain" in out
    assert "membrane counts: Cell counts within" in out and "report.html" in out
    header = (tmp_path / "ev" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("image,channel,pearson_r,") and "count_target,count_prediction" in header
    assert main(["info", str(run / "model")]) == 0
    info = capsys.readouterr().out
    assert "architecture: pics" in info and "(verified)" in info and "tiling margin" in info


def test_user_errors_exit_2_with_one_line(tmp_path, trained_run, capsys):
    img = tmp_path / "two.tif"
    write_tiff(img, np.random.default_rng(0).normal(size=(2, 64, 64)))
    cases = [
        (["train", str(tmp_path / "no.csv"), "--out", str(tmp_path / "r")], "no.csv: manifest not found"),
        (["predict", str(trained_run.model_dir), str(img), "--out", str(tmp_path / "p")],
         "two.tif: the image has 2 channel(s) but the model was trained on 1"),
        (["predict", str(tmp_path / "nomodel"), str(img), "--out", str(tmp_path / "p")], "model not found"),
        (["predict", str(trained_run.model_dir), str(img), "--out", str(tmp_path / "p"), "--input-channels", "4"],
         "channels [4] requested but the file has 2"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").glob("*.tif"))


def test_too_small_image_and_unwritable_output(tmp_path, trained_run, capsys):
    small = tmp_path / "small.tif"
    write_tiff(small, np.random.default_rng(0).normal(size=(1, 3, 3)))
    assert main(["predict", str(trained_run.model_dir), str(small), "--out", str(tmp_path / "p")]) == 2
    assert "smaller than the model's minimum (4, 4)" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["predict", str(trained_run.model_dir), str(small), "--out", str(blocker / "sub")]) == 2
    assert "cannot write to this output folder" in capsys.readouterr().err


def test_config_error_names_the_field(tmp_path, synthetic_manifest, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lr: -1\n")
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    assert "bad.yaml: training.lr: Input should be greater than 0 (got -1)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "model").exists()


def test_evaluate_mismatched_shapes(tmp_path, capsys):
    write_tiff(tmp_path / "a.tif", np.random.default_rng(0).normal(size=(1, 20, 20)))
    write_tiff(tmp_path / "b.tif", np.random.default_rng(1).normal(size=(1, 20, 21)))
    assert main(["evaluate", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) == 2
    assert "has shape (1, 20, 20) but target" in capsys.readouterr().err


def test_resume_after_kill_9(tmp_path, synthetic_manifest):
    run = tmp_path / "run"
    cfg = _config(tmp_path, max_epochs=400, patches_per_epoch=4)
    from conftest import train_killed_after_first_checkpoint

    last = train_killed_after_first_checkpoint(synthetic_manifest, run, cfg)
    assert last.exists(), "no checkpoint was written before the kill"
    assert not (run / "model").exists()
    import torch
    epoch_at_kill = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert epoch_at_kill < 399
    data = yaml.safe_load(cfg.read_text())
    data["training"]["lr"] = 0.01  # another optimisation: refuse to mix it into the interrupted run
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(changed)]) == 2
    from virtualstain.training.config import load_config
    from virtualstain.workflows.stain.train import train

    config = load_config(cfg)
    config.training.max_epochs = epoch_at_kill + 2  # the budget may change between resumes
    result = train(synthetic_manifest, run, config)
    assert result.summary.resumed_from == str(last)
    assert result.summary.epochs == epoch_at_kill + 2  # continued, not restarted
    log = (run / "log" / "metrics.csv").read_text().splitlines()
    assert len(log) > 2 * (epoch_at_kill + 1)  # the log kept the epochs before the kill


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path, synthetic_manifest):
    from conftest import tiny_config

    from virtualstain.workflows.stain.train import train

    cfg = tiny_config(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1)
    result = train(synthetic_manifest, tmp_path / "ddp", cfg)
    assert (result.model_dir / "weights.safetensors").exists()
    assert result.summary.epochs >= 1


def test_planes_chosen_in_the_manifest_are_reused_by_predict(tmp_path, capsys):
    from virtualstain.data.synthetic import make_field

    rows = ["input,target,input_channels"]
    for i in range(3):
        f = make_field((64, 64), seed=i)
        stack = np.concatenate([f.input, np.random.default_rng(i).normal(size=f.input.shape), 2 * f.input])
        write_tiff(tmp_path / f"s{i}.tif", stack)
        write_tiff(tmp_path / f"t{i}.tif", f.target[:1])
        rows.append(f's{i}.tif,t{i}.tif,"0,2"')
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    cfg = _config(tmp_path)
    assert main(["train", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"), "--config", str(cfg)]) == 0
    meta = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert meta["input_channels"] == [0, 2] and meta["input_channel_names"] == ["input0", "input2"]
    assert main(["predict", str(tmp_path / "run" / "model"), str(tmp_path / "s0.tif"), "--out", str(tmp_path / "p")]) == 0
    assert read_image(tmp_path / "p" / "s0.tif")[0].shape == (64, 64)
    held_out = next((tmp_path / "run" / "test" / "input").glob("*.tif"))  # holds the selected planes, named
    assert read_image(held_out)[0].shape == (2, 64, 64)
    assert main(["predict", str(tmp_path / "run" / "model"), str(held_out), "--out", str(tmp_path / "p")]) == 0
    assert main(["predict", str(tmp_path / "run" / "model"), str(tmp_path / "s1.tif"), "--out", str(tmp_path / "p"),
                 "--input-channels", "0"]) == 2
    assert "the image has 1 channel(s) but the model was trained on 2" in capsys.readouterr().err


def test_a_bug_exits_1_with_a_traceback(tmp_path, monkeypatch, capsys):
    import virtualstain.workflows.stain.evaluate as evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(evaluate, "evaluate_files", broken)
    assert main(["evaluate", "a.tif", "b.tif"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "internal error (a bug)" in err
    assert main(["no-such-command"]) == 2  # usage errors are the user's
