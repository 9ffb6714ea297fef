"""U-Net family, registry, receptive field."""

import pytest
import torch

from virtualstain.errors import UserError
from virtualstain.models.configs import SRCNNConfig, config_from_dict
from virtualstain.models.receptive_field import receptive_field_reach, tiling_margin
from virtualstain.models.registry import build, make_config
from virtualstain.models.unet import UNet, UNetConfig, count_parameters


def test_named_configurations_match_the_papers():
    pics = build("pics", make_config("pics", 1, 1))
    fnet = build("fnet", make_config("fnet", 1, 1))
    assert pics.config.widths() == [16, 32, 64, 128, 256] and pics.config.residual
    assert fnet.config.widths() == [32, 64, 128, 256, 512] and not fnet.config.residual
    papers = build("pics", make_config("pics", 1, 1, upsampling="transposed"))  # PICS's own 2×2 transposed convs
    assert 1.8e6 < count_parameters(papers) < 2.1e6  # PICS: "approximately 1.9 million parameters"
    assert pics.config.upsampling == "bilinear" and 2.2e6 < count_parameters(pics) < 2.3e6  # 3×3 convs after upsampling
    assert UNetConfig().upsampling == "transposed"  # what bundles saved without the field were trained with
    with pytest.raises(UserError, match=r"model.upsampling must be one of \['transposed', 'bilinear'\], got 'nearest'"):
        make_config("pics", 1, 1, upsampling="nearest")
    assert isinstance(fnet.head, torch.nn.Conv2d)  # linear output: nothing after the last conv


def test_shapes_2d_3d_and_anisotropic():
    x2 = torch.randn(2, 3, 32, 48)
    assert build("unet", make_config("unet", 3, 2, depth=2, base_width=4))(x2).shape == (2, 2, 32, 48)
    cfg3 = make_config("unet", 1, 1, spatial_dims=3, depth=2, base_width=4, downsample_z=False)
    assert cfg3.size_multiple() == (1, 4, 4)
    assert build("unet", cfg3)(torch.randn(1, 1, 5, 16, 16)).shape == (1, 1, 5, 16, 16)


def test_residual_adds_input_or_projection():
    net = UNet(UNetConfig(in_channels=1, out_channels=1, depth=1, base_width=2, residual=True)).eval()
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(net(x), x)
    multi = UNet(UNetConfig(in_channels=2, out_channels=3, depth=1, base_width=2, residual=True))
    assert multi(torch.randn(1, 2, 8, 8)).shape == (1, 3, 8, 8)


def test_registry_refuses_unknown_names_and_fields():
    known = r"\['cgan', 'fnet', 'pics', 'sr_unet', 'srcnn', 'unet'\]"
    with pytest.raises(UserError, match=r"model.architecture 'resnet' is not known; choose one of " + known):
        make_config("resnet", 1, 1)
    with pytest.raises(UserError, match=r"unknown setting\(s\) \['widht'\]"):
        make_config("pics", 1, 1, widht=3)


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_equals_autograd_support(depth, upsampling):
    """The analytic reach equals the widest input support of any output pixel's gradient."""
    torch.manual_seed(depth)
    cfg = UNetConfig(depth=depth, base_width=4, batchnorm=False, upsampling=upsampling)
    net = UNet(cfg).eval()
    n, period = 152, 2 ** depth  # the deepest reach (66) fits on either side of every position
    worst = 0
    for p in range(72, 72 + period):
        x = torch.randn(1, 1, n, n, requires_grad=True)
        net(x)[0, 0, p, p].backward()
        support = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
        worst = max(worst, p - int(support.min()), int(support.max()) - p)
    assert receptive_field_reach(cfg) == (worst, worst)
    assert tiling_margin(cfg)[0] % period == 0 and tiling_margin(cfg)[0] >= worst


@pytest.mark.parametrize("upsampling, downsample_z, reach", [("transposed", True, (24, 24, 24)),
                                                             ("transposed", False, (11, 24, 24)),
                                                             ("bilinear", True, (30, 30, 30)),
                                                             ("bilinear", False, (13, 30, 30))])
def test_receptive_field_3d_equals_impulse_response(upsampling, downsample_z, reach):
    """Per axis of a 3D U-Net (Z downsampled or kept), the reach is the widest response to an input impulse."""
    cfg = UNetConfig(spatial_dims=3, depth=2, base_width=1, batchnorm=False, upsampling=upsampling,
                     downsample_z=downsample_z)
    net = UNet(cfg).eval()
    for name, p in net.named_parameters():  # positive weights, no biases: nothing cancels, no ReLU is ever off,
        torch.nn.init.uniform_(p, 0.1, 1.0) if name.endswith("weight") else torch.nn.init.zeros_(p)
    x = torch.zeros(4, 1, 68, 68, 68)  # so an impulse reaches exactly the outputs that depend on it
    for k in range(4):  # every alignment to the 4-voxel grid (the support is a box: one position per axis)
        x[k, 0, 32 + k, 32 + k, 32 + k] = 1.0  # the reach (≤ 30) fits on either side
    with torch.inference_mode():
        response = net(x)[:, 0]
    worst = [0, 0, 0]
    for k in range(4):
        for axis in range(3):
            support = torch.nonzero(response[k].sum([a for a in range(3) if a != axis])).flatten()
            worst[axis] = max(worst[axis], 32 + k - int(support.min()), int(support.max()) - 32 - k)
    assert receptive_field_reach(cfg) == tuple(worst) == reach


def test_each_architecture_has_its_own_configuration_type_and_constraints():
    srcnn = make_config("srcnn", 1, 1, scale=4)
    assert isinstance(srcnn, SRCNNConfig) and not hasattr(srcnn, "depth")
    assert srcnn.size_multiple() == (1, 1)  # "same" convolutions take any size
    assert srcnn.body_reach() == (4 + 0 + 2,) * 2 and receptive_field_reach(srcnn) == (-(-6 // 4) + 2,) * 2
    assert srcnn.bytes_per_pixel() == 4.0 * (2 * 64 + 1 + 1) * 16
    unet = make_config("pics", 1, 1, scale=4)
    assert isinstance(unet, UNetConfig) and unet.size_multiple() == (4, 4)  # 2^4 / gcd(2^4, 4)
    for config in (srcnn, unet):
        assert config_from_dict(config.to_dict()) == config
    with pytest.raises(UserError, match=r"model: setting\(s\) \['depth'\] do not apply to 'srcnn'"):
        make_config("srcnn", 1, 1, depth=3)
    assert make_config("srcnn", 1, 1, depth=None, base_width=16).base_width == 16  # None keeps the preset
    with pytest.raises(UserError, match="'srcnn' is 2D only"):
        make_config("srcnn", 1, 1, spatial_dims=3)
    with pytest.raises(UserError, match=r"targets 4× larger than the inputs need a 2D model"):
        make_config("unet", 1, 1, spatial_dims=3, scale=4)
    with pytest.raises(UserError, match="'pics' needs a UNetConfig, got SRCNNConfig"):
        build("pics", srcnn)
