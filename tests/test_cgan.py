"""VirFluoNet's conditional GAN: the generator's geometry, the config, adversarial training, resume, DDP, bundle."""


import numpy as np
import pytest
import torch
import yaml

from virtualstain.errors import UserError
from virtualstain.models.receptive_field import virfluonet_body_reach
from virtualstain.models.registry import build, make_config
from virtualstain.training.config import config_from_dict

CGAN = {"model": {"architecture": "cgan", "depth": 3, "base_width": 4, "max_width": 16},
        "data": {"patch_size": [32, 32]},
        "training": {"max_epochs": 2, "patches_per_epoch": 8, "batch_size": 4, "progress_bar": False,
                     "early_stopping_patience": None, "warmup_fraction": 0.0}}


def _cgan(**training):
    data = yaml.safe_load(yaml.safe_dump(CGAN))
    data["training"].update(training)
    return data


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear", "subpixel"])
def test_generator_reach_is_its_measured_receptive_field(upsampling):
    """The computed one-sided reach equals the widest input dependence found by back-propagation."""
    torch.manual_seed(0)
    net = build("cgan", make_config("cgan", 1, 1, depth=3, base_width=4, max_width=8, upsampling=upsampling)).eval()
    for m in net.modules():  # PyTorch's default initialisation: the GAN's N(0, 0.02) leaves many ReLUs dead here
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.reset_parameters()
    x = torch.zeros(1, 1, 128, 128, requires_grad=True)
    worst = 0
    for o in range(56, 64):  # every alignment of an output pixel to the 2³ grid
        x.grad = None
        net(x)[0, 0, o, o].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1))[:, 0]
        worst = max(worst, o - int(rows.min()), int(rows.max()) - o)
    assert virfluonet_body_reach(3, upsampling) == worst


def test_generator_output_lies_in_the_tanh_range_mapped_to_unit_interval():
    net = build("cgan", make_config("cgan", 2, 3, depth=4, base_width=4))
    with torch.no_grad():
        y = net(torch.randn(2, 2, 64, 48) * 5)
    assert y.shape == (2, 3, 64, 48) and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert make_config("cgan", 1, 1).size_multiple() == (64, 64)


def test_cgan_brings_the_paper_settings_where_the_config_is_silent():
    c = config_from_dict({"model": {"architecture": "cgan"}})
    t = c.training
    assert (t.loss, t.lr, t.betas, c.data.target_normalization) == ("mae", 2e-4, (0.5, 0.999), "minmax")
    a = t.adversarial
    assert (a.pixel_weight, a.adversarial_weight, a.weight_l1, a.discriminator_lr) == (0.99, 0.01, 0.001, 2e-4)
    mine = config_from_dict({"model": {"architecture": "cgan"}, "training": {"loss": "mse", "lr": 1e-3}})
    assert (mine.training.loss, mine.training.lr) == ("mse", 1e-3)
    assert config_from_dict({}).training.adversarial is None  # other architectures train without a discriminator


@pytest.mark.parametrize("extra, message", [
    ({"training": {"lr_schedule": "plateau"}}, "training.lr_schedule: 'plateau' is not available with "
                                               "training.adversarial (two optimizers); use cosine or none"),
    ({"data": {"patch_size": [40, 40]}}, "data.patch_size [40, 40]: the paper's discriminator needs multiples of 16"),
    ({"training": {"optimizer": "adadelta"}}, "training.optimizer: adversarial training uses adam for both networks"),
])
def test_cgan_config_constraints_are_named(extra, message):
    data = {"model": {"architecture": "cgan"}, **extra}
    with pytest.raises(UserError, match="^config: ") as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_weight_l1_is_the_mean_absolute_parameter():
    from virtualstain.training.adversarial import weight_l1

    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.5, -0.5]]))
        net.bias.copy_(torch.tensor([-1.0, 1.0]))
    assert float(weight_l1(net)) == pytest.approx(9.0 / 8)


def test_cgan_trains_both_networks_and_ships_only_the_generator(tmp_path, synthetic_manifest):
    from safetensors.torch import load_file

    from virtualstain.inference.predict import predict
    from virtualstain.models.bundle import load_bundle
    from virtualstain.workflows.stain.train import train

    result = train(synthetic_manifest, tmp_path / "run", config_from_dict(_cgan()))
    log = (tmp_path / "run" / "log" / "metrics.csv").read_text()
    assert "train_adversarial" in log and "train_discriminator" in log and "lr_discriminator" in log
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(last["optimizer_states"]) == 2  # both networks' Adam states resume
    assert any(k.startswith("discriminator.") for k in last["state_dict"])
    shipped = load_file(str(result.model_dir / "weights.safetensors"))
    assert shipped and not any("discriminator" in k for k in shipped)
    bundle = load_bundle(result.model_dir)
    assert bundle.architecture == "cgan"
    image = np.random.default_rng(0).random((1, 90, 70)).astype(np.float32) * 100
    whole = predict(bundle, image, tile_size=0)
    tiled = predict(bundle, image, tile_size=24)
    assert whole.shape == (2, 90, 70)
    span = float(whole.max() - whole.min())
    assert np.abs(tiled - whole).max() <= 1e-4 * max(span, 1e-6)


def test_cgan_resumes_after_kill_9(tmp_path, synthetic_manifest):
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_cgan(max_epochs=400, patches_per_epoch=4)))
    from conftest import train_killed_after_first_checkpoint

    last = train_killed_after_first_checkpoint(synthetic_manifest, run, cfg)
    assert last.exists(), "no checkpoint was written before the kill"
    state = torch.load(last, map_location="cpu", weights_only=True)
    epoch_at_kill, steps_at_kill = state["epoch"], state["global_step"]
    from virtualstain.training.config import load_config
    from virtualstain.workflows.stain.train import train

    config = load_config(cfg)
    config.training.max_epochs = epoch_at_kill + 2
    result = train(synthetic_manifest, run, config)
    assert result.summary.resumed_from == str(last)
    assert result.summary.epochs == epoch_at_kill + 2
    after = torch.load(last, map_location="cpu", weights_only=True)
    assert after["global_step"] == steps_at_kill + 2  # one more epoch: 1 batch × 2 optimizer steps (D, then G)


@pytest.mark.slow
def test_cgan_ddp_on_two_cpu_processes(tmp_path, synthetic_manifest):
    from virtualstain.workflows.stain.train import train

    cfg = config_from_dict(_cgan(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1))
    result = train(synthetic_manifest, tmp_path / "ddp", cfg)
    assert (result.model_dir / "weights.safetensors").exists()
    assert result.summary.epochs == 1


def test_start_at_sets_the_untrained_output_to_the_targets_mean():
    net = build("cgan", make_config("cgan", 1, 2, depth=3, base_width=4)).eval()
    net.start_at([0.1, 0.7])
    with torch.no_grad():
        net.head[-1][0].weight.zero_()  # the last conv's weights off: only its bias (and tanh) remain
        y = net(torch.rand(1, 1, 32, 32))
    np.testing.assert_allclose(y[0, :, 5, 7].numpy(), [0.1, 0.7], atol=1e-6)
