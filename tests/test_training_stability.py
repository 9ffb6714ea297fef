"""The training loop's schedule, weight average, precision and automatic choices (issue 13)."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from virtualstain import _hardware
from virtualstain.training import auto, precision
from virtualstain.training.auto import choose_patches_per_epoch
from virtualstain.training.lightning_module import EMAUpdate, deployable_weights
from virtualstain.training.schedule import CosineBudgetSchedule


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    s = CosineBudgetSchedule(total_steps=1000, warmup=0.1, floor=0.0)
    assert s.factor(50) == pytest.approx(0.5)  # halfway through the warm-up
    assert s.factor(100) == pytest.approx(1.0)
    assert s.factor(550) == pytest.approx(0.5)  # halfway through the decay: ½(1 + cos π/2)
    assert s.factor(100 + 900 * 2 // 3) == pytest.approx(0.5 * (1 + math.cos(2 * math.pi / 3)))
    assert s.factor(1000) == pytest.approx(0.0) and s.factor(5000) == pytest.approx(0.0)
    assert CosineBudgetSchedule(1000, warmup=0.1, floor=0.01).factor(1000) == pytest.approx(0.01)


def test_cosine_schedule_follows_the_budget_that_ends_first():
    s = CosineBudgetSchedule(total_steps=10_000, budget_seconds=100.0, warmup=0.0, floor=0.0)
    assert s.progress(100, elapsed_seconds=50.0) == pytest.approx(0.5)  # a busy machine: time runs out first
    assert s.factor(100, elapsed_seconds=50.0) == pytest.approx(0.5)
    assert s.progress(9_000, elapsed_seconds=10.0) == pytest.approx(0.9)  # a fast machine: the steps end first
    assert s.progress(0, elapsed_seconds=500.0) == 1.0


def test_ema_update_matches_the_formula_and_keeps_integer_buffers():
    update = EMAUpdate(0.9)  # a module-level class, so DDP-spawn can send it (test_cli runs DDP on 2 processes)
    avg, cur = torch.tensor([1.0]), torch.tensor([3.0])
    d0 = min(0.9, 1 / 10)  # first average after the copy: (1 + 0) / (10 + 0)
    assert float(update(avg, cur, 0)) == pytest.approx(d0 * 1 + (1 - d0) * 3)
    assert float(update(avg, cur, torch.tensor(1000))) == pytest.approx(0.9 * 1 + 0.1 * 3)
    counter = torch.tensor(7)
    assert int(update(torch.tensor(3), counter, 5)) == 7


def test_the_bundle_gets_the_averaged_weights():
    state = {"network.w": torch.zeros(1), "ema.module.w": torch.ones(1), "ema.n_averaged": torch.tensor(3)}
    assert deployable_weights(state) == {"w": torch.ones(1)}
    assert deployable_weights({"network.w": torch.zeros(1)}) == {"w": torch.zeros(1)}


def test_bf16_is_chosen_only_with_native_support(tmp_path, monkeypatch):
    with_flags, without = tmp_path / "a", tmp_path / "b"
    with_flags.write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu sse avx2\n")
    assert _hardware.cpu_has_native_bf16(with_flags) and not _hardware.cpu_has_native_bf16(without)
    assert not _hardware.cpu_has_native_bf16(tmp_path / "missing")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.choose_precision("auto", "auto").lightning == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.choose_precision("auto", "cpu").lightning == "32-true"
    assert precision.choose_precision("16-mixed").lightning == "16-mixed"


def test_patches_per_epoch_rules():
    p, fast = 128 * 128, auto.Throughput(patches_per_second=40.0, validation_seconds=1.0)
    # one pass over the training area, in whole batches
    assert choose_patches_per_epoch(1000 * p, 0, p, 8, fast).value == 1000
    # validation ≤ 20 % of the time: 4 × 1 s × 40 patches/s = 160 patches at least
    assert choose_patches_per_epoch(10 * p, 0, p, 8, fast).value == 160
    # unmeasured (DDP): validation estimated at a third of a training pixel: 4 × 300/3 = 400
    assert choose_patches_per_epoch(10 * p, 300 * p, p, 8).value == 400
    # a budget caps an epoch at throughput × budget / 20 (but not below the floors)
    capped = choose_patches_per_epoch(10_000 * p, 0, p, 8, fast, budget_seconds=300.0)
    assert capped.value == 600 and "budget" in capped.reason
    assert choose_patches_per_epoch(10_000 * p, 0, p, 8, fast, budget_seconds=30.0).value == 160
    # at least 16 batches
    assert choose_patches_per_epoch(p, 0, p, 8, auto.Throughput(1000.0, 0.0)).value == 128


def test_train_prints_records_and_reuses_its_choices(tmp_path, synthetic_manifest, monkeypatch):
    from virtualstain.workflows.stain.train import train

    measured = []
    monkeypatch.setattr("virtualstain.workflows.stain.train.measure_throughput",
                        lambda *a, **k: measured.append(1) or auto.Throughput(50.0, 0.1))
    config = tiny_config(patches_per_epoch="auto", max_epochs=1)
    lines: list[str] = []
    result = train(synthetic_manifest, tmp_path / "run", config, max_minutes=5, log=lines.append)
    assert measured == [1]
    recorded = json.loads((tmp_path / "run" / "choices.json").read_text())
    assert [c["setting"] for c in recorded] == ["training.precision", "data.intensity_augmentation",
                                                "training.patches_per_epoch"]
    assert lines == [f"{c['setting']} = {c['value']}: {c['reason']}" for c in recorded] == result.summary.choices
    with open(tmp_path / "run" / "log" / "metrics.csv") as fh:
        columns = set(next(csv.reader(fh)))
    assert {"val_pearson", "data_seconds", "step_seconds", "val_seconds", "lr"} <= columns
    # a resumed run reuses the recorded choices (same epochs, same schedule): no new measurement
    longer = tiny_config(patches_per_epoch="auto", max_epochs=2)
    again = train(synthetic_manifest, tmp_path / "run", longer, max_minutes=5, log=lines.append)
    assert measured == [1] and again.summary.epochs == 2 and again.summary.choices == result.summary.choices


def test_checkpoints_hold_the_average_and_the_bundle_ships_it(tmp_path, synthetic_manifest):
    from virtualstain.training.fit import load_checkpoint
    from virtualstain.workflows.stain.train import train

    result = train(synthetic_manifest, tmp_path / "run", tiny_config(ema_decay=0.5))
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")["state_dict"]
    averaged = deployable_weights(best)
    raw = {k.removeprefix("network."): v for k, v in best.items() if k.startswith("network.")}
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw)  # the average is not the raw weights
    shipped = result.bundle.network.state_dict()
    assert all(torch.equal(shipped[k].float(), averaged[k].float()) for k in averaged)


def test_lightning_notes_stay_out_of_the_terminal(tmp_path, synthetic_manifest, capfd):
    from virtualstain.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(tiny_config().to_yaml())
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "run"), "--config", str(path)]) == 0
    out, err = capfd.readouterr()
    for chatter in ("GPU available", "TPU available", "Tip", "LeafSpec", "litlogger", "UserWarning"):
        assert chatter not in out + err, chatter
    assert "training.precision = " in out


def test_measured_throughput_leaves_the_network_unchanged():
    from virtualstain.data.patches import PatchSampler
    from virtualstain.data.splits import Region
    from virtualstain.models.registry import build, make_config

    net = build("pics", make_config("pics", 1, 1, depth=2, base_width=4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(1, 64, 64)).astype(np.float32)
    sampler = PatchSampler([x], [x], [Region(0, "train", ((0, 64), (0, 64)))], (32, 32))
    val = [(torch.from_numpy(x), torch.from_numpy(x))]
    speed = auto.measure_throughput(net, sampler, val, 4, "32-true")
    assert speed.patches_per_second > 0 and speed.validation_seconds > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_a_fixed_number_of_epochs_trains_the_same_model_twice(tmp_path, synthetic_manifest):
    """Bitwise at one thread: with more, the free-core thread count (training/threads.py) follows the machine's
    load, and another thread count sums floats in another order."""
    from virtualstain.workflows.stain.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = train(synthetic_manifest, tmp_path / "a", tiny_config()).bundle.network.state_dict()
        b = train(synthetic_manifest, tmp_path / "b", tiny_config()).bundle.network.state_dict()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_threads_follow_the_cores_others_leave_free(tmp_path, monkeypatch):
    from virtualstain.training import threads

    stat = tmp_path / "stat"

    def write(user, nice, system, idle):
        stat.write_text(f"cpu  {user} {nice} {system} {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")

    write(0, 0, 0, 0)
    before = threads.sample_cpu(stat)
    write(100 * threads._HZ // 100, 50 * threads._HZ // 100, 50 * threads._HZ // 100, 500)  # 2 s busy, niced too
    after = threads.sample_cpu(stat)
    before = threads.CpuSample(wall=0.0, machine_busy=before.machine_busy, own=0.0)
    after = threads.CpuSample(wall=2.0, machine_busy=after.machine_busy, own=1.0)  # we used 1 s of it
    assert threads.others_cores(before, after) == pytest.approx(0.5)
    assert threads.threads_for(2, 0.4) == 2 and threads.threads_for(2, 0.9) == 1 and threads.threads_for(2, 5) == 1
    assert threads.threads_for(8, 2.2) == 6
    assert threads.sample_cpu(tmp_path / "absent") is None


def test_new_loss_options_train_end_to_end(tmp_path, synthetic_manifest):
    from virtualstain.workflows.stain.train import train

    config = tiny_config(loss="mae_msssim", foreground_weight=2.0)
    result = train(synthetic_manifest, tmp_path / "run", config)
    assert result.summary.epochs == 2 and math.isfinite(result.summary.best_val_loss)
