"""Losses, optimisers, schedules and datasets of the training workflow."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from virtualstain.data.patches import PatchSampler
from virtualstain.data.samples import samples_from_arrays
from virtualstain.data.splits import plan_splits
from virtualstain.models.registry import build, make_config
from virtualstain.training.config import TrainConfig, config_from_dict
from virtualstain.training.lightning_module import PatchDataset, RegionDataset, VirtualStainModule
from virtualstain.training.losses import LOSSES


def test_losses_match_independent_formulas(rng):
    p = torch.from_numpy(rng.normal(size=(3, 2, 8, 9)))
    t = torch.from_numpy(rng.normal(size=(3, 2, 8, 9))) + 0.5 * p
    expected_r = np.mean([pearsonr(p[i, c].ravel(), t[i, c].ravel())[0] for i in range(3) for c in range(2)])
    assert float(LOSSES["pearson"](p, t)) == pytest.approx(1 - expected_r, abs=1e-6)
    assert float(LOSSES["mse"](p, t)) == pytest.approx(float(((p - t) ** 2).mean()))
    assert float(LOSSES["mae"](p, t)) == pytest.approx(float((p - t).abs().mean()))


def test_optimisers_and_plateau_schedule():
    net = build("pics", make_config("pics", 1, 1, depth=1, base_width=2))
    adam = VirtualStainModule(net, LOSSES["mse"], optimizer="adam", lr=1e-3, betas=(0.5, 0.999),
                              lr_schedule="plateau").configure_optimizers()
    assert isinstance(adam["optimizer"], torch.optim.Adam)
    assert adam["optimizer"].param_groups[0]["betas"] == (0.5, 0.999)
    scheduler = adam["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and adam["lr_scheduler"]["monitor"] == "val_loss"
    plain = VirtualStainModule(net, LOSSES["mse"], optimizer="adadelta", lr=1.0, lr_schedule="none").configure_optimizers()
    assert isinstance(plain, torch.optim.Adadelta) and plain.param_groups[0]["lr"] == 1.0


def test_config_defaults_and_yaml_roundtrips():
    c = TrainConfig()
    assert c.model.architecture == "pics" and c.training.betas == (0.9, 0.999) and c.training.lr == 1e-3
    assert c.training.lr_schedule == "cosine" and c.training.ema_decay == 0.998 and c.training.patches_per_epoch == "auto"
    assert c.patch_size() == (128, 128)
    assert config_from_dict({"model": {"spatial_dims": 3}}).patch_size() == (32, 64, 64)
    import yaml
    assert config_from_dict(yaml.safe_load(c.to_yaml())) == c


def test_patch_dataset_is_reproducible_and_changes_per_epoch(rng):
    x = rng.normal(size=(1, 64, 64)).astype(np.float32)
    samples = samples_from_arrays([x], [x.copy()])
    plan = plan_splits(samples)
    sampler = PatchSampler([x], [x], plan.of("train"), (16, 16))
    ds = PatchDataset(sampler, 4, seed=1)
    a, b = ds[2], ds[2]
    assert torch.equal(a[0], b[0])
    ds.epoch = 1
    assert not torch.equal(ds[2][0], a[0])


def test_region_dataset_pads_inputs_and_keeps_targets(rng):
    x = rng.normal(size=(1, 50, 70)).astype(np.float32)
    samples = samples_from_arrays([x], [x.copy()])
    plan = plan_splits(samples)
    ds = RegionDataset(samples, plan.of("val"), (16, 16), max_size=32)
    xi, yi = ds[0]
    assert yi.shape == (1, 32, 10) and xi.shape == (1, 32, 16)  # centre crop to 32 rows; width padded 10 → 16
    assert torch.equal(xi[:, :, :10], yi)
