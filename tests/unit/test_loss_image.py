"""SSIM against pytorch_msssim, the hand-built VGG19 against torchvision's layout, focal and Charbonnier."""

import math

import pytest
import torch
import torch.nn.functional as F

pytorch_msssim = pytest.importorskip("pytorch_msssim")

from engine.errors import ConfigError  # noqa: E402
from engine.loss import LossInputError, build_loss  # noqa: E402
from engine.loss.perceptual import VggLoss  # noqa: E402


def _loss(name, **params):
    return build_loss(name, params, where="LOSS.img[0]")


def _image_pair(data_range):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 40, generator=g) * data_range
    y = (x + 0.2 * data_range * torch.randn(2, 3, 32, 40, generator=g)).clamp(0, data_range)
    return x, y


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_matches_pytorch_msssim(data_range):
    x, y = _image_pair(data_range)
    ref = pytorch_msssim.ssim(x, y, data_range=data_range, size_average=False)
    per_image = _loss("SSIMLoss", data_range=data_range, reduction="none")(x, y)
    torch.testing.assert_close(per_image, 1 - ref, atol=1e-5, rtol=0)
    mean = _loss("SSIMLoss", data_range=data_range, lambda_weight=2.0)(x, y)
    assert abs(mean.item() - 2 * (1 - ref.mean().item())) < 2e-5


def test_ssim_other_window_matches_and_identical_images_give_zero():
    x, y = _image_pair(1.0)
    ref = pytorch_msssim.ssim(x, y, data_range=1.0, win_size=7, win_sigma=1.0)
    assert abs(_loss("SSIMLoss", window_size=7, sigma=1.0)(x, y).item() - (1 - ref.item())) < 1e-5
    assert abs(_loss("SSIMLoss")(x, x).item()) < 1e-6


def test_ssim_rejects_images_smaller_than_the_window():
    small = torch.rand(1, 1, 8, 8)
    with pytest.raises(LossInputError, match=r"image size \(8, 8\) is smaller than window_size=11"):
        _loss("SSIMLoss")(small, small)
    with pytest.raises(ConfigError, match="window_size must be a positive odd"):
        _loss("SSIMLoss", window_size=4)


# torchvision's vgg19().features: the index of every convolution and its (in, out) channels
TORCHVISION_VGG19_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
                           14: (256, 256), 16: (256, 256), 19: (256, 512), 21: (512, 512), 23: (512, 512),
                           25: (512, 512), 28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}


def _torchvision_format_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, (cin, cout) in TORCHVISION_VGG19_CONVS.items():
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(2 / (9 * cin))
        state[f"features.{index}.bias"] = torch.zeros(cout)
    state["classifier.0.weight"] = torch.zeros(4, 4)  # a full torchvision dict also has the classifier
    return state


def test_vgg_without_weights_path_says_why():
    with pytest.raises(ConfigError, match="cannot be downloaded.*path"):
        _loss("VggLoss")


def test_vgg_loads_a_torchvision_state_dict(tmp_path):
    state = _torchvision_format_state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss = _loss("VggLoss", weights_path=str(path), layers=["conv1_1", "relu2_2", "relu5_4"])
    assert len(loss.vgg) == 36  # features[0..35]: up to relu5_4, pool5 never run
    torch.testing.assert_close(loss.vgg[34].weight, state["features.34.weight"])
    torch.testing.assert_close(loss.vgg[0].bias, state["features.0.bias"])
    assert not any(p.requires_grad for p in loss.parameters())

    x = torch.rand(1, 3, 32, 32)
    y = torch.rand(1, 3, 32, 32)
    # conv1_1 by hand: normalise with the ImageNet statistics, then the first convolution
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    conv = lambda t: F.conv2d((t - mean) / std, state["features.0.weight"], state["features.0.bias"], padding=1)
    only_conv = _loss("VggLoss", weights_path=str(path), layers=["conv1_1"])
    torch.testing.assert_close(only_conv(x, y), F.l1_loss(conv(x), conv(y)), rtol=1e-5, atol=1e-6)
    assert loss(x, x).item() == 0.0


def test_vgg_input_range_maps_to_unit_range(tmp_path):
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    unit = _loss("VggLoss", allow_random_init=True, layers=["relu2_1"], criterion="mse")
    signed = _loss("VggLoss", allow_random_init=True, layers=["relu2_1"], criterion="mse", input_range=[-1, 1])
    signed.load_state_dict(unit.state_dict())
    torch.testing.assert_close(signed(x * 2 - 1, y * 2 - 1), unit(x, y), rtol=1e-5, atol=1e-7)


def test_vgg_bad_weights_and_layers(tmp_path):
    state = _torchvision_format_state_dict()
    del state["features.34.weight"]
    path = tmp_path / "vgg16ish.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"not a torchvision VGG19 state dict: missing \['features.34.weight'\]"):
        _loss("VggLoss", weights_path=str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        _loss("VggLoss", weights_path=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="unknown layer.*'relu5_5'.*Did you mean"):
        _loss("VggLoss", allow_random_init=True, layers=["relu5_5"])
    with pytest.raises(LossInputError, match=r"expected RGB images \(N, 3, H, W\)"):
        VggLoss(allow_random_init=True, layers=["relu1_1"])(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_focal_reduces_to_cross_entropy_at_gamma_zero():
    g = torch.Generator().manual_seed(1)
    logits, binary = torch.randn(4, 5, generator=g), (torch.rand(4, 5, generator=g) > 0.5).float()
    torch.testing.assert_close(_loss("FocalLoss", gamma=0.0)(logits, binary),
                               F.binary_cross_entropy_with_logits(logits, binary))
    classes = torch.tensor([0, 4, 2, -100])
    torch.testing.assert_close(_loss("FocalLoss", gamma=0.0, mode="multiclass")(logits, classes),
                               F.cross_entropy(logits, classes))


def test_focal_by_hand():
    # logit 0 -> p = 0.5; target 1: ce = ln 2, (1 - p_t)^2 = 1/4, alpha_t = 0.25
    out = _loss("FocalLoss", gamma=2.0, alpha=0.25)(torch.zeros(1), torch.ones(1))
    assert out.item() == pytest.approx(math.log(2) * 0.25 * 0.25)
    # multiclass, two classes with equal logits: p_t = 0.5; class weights pick 3.0 for class 1
    out = _loss("FocalLoss", mode="multiclass", alpha=[1.0, 3.0])(torch.zeros(1, 2), torch.tensor([1]))
    assert out.item() == pytest.approx(math.log(2) * 0.25 * 3.0)
    with pytest.raises(ConfigError, match="multiclass mode: alpha must be None or one weight per class"):
        _loss("FocalLoss", mode="multiclass", alpha=0.25)


def test_charbonnier_by_hand():
    out = _loss("CharbonnierLoss", eps=4.0, reduction="sum")(torch.tensor([3.0, 0.0]), torch.zeros(2))
    assert out.item() == pytest.approx(5.0 + 4.0)
    assert _loss("CharbonnierLoss", eps=1e-3)(torch.tensor([2.0]), torch.zeros(1)).item() == pytest.approx(2.0, rel=1e-6)


def test_vgg_seed_form_is_mse_of_the_whole_feature_stack(tmp_path):
    """The seed's VggLoss(vgg_path, vgg_arch): MSE of features(x) (through pool5), images as given."""
    seed_form = _loss("VggLoss", vgg_arch="vgg19", allow_random_init=True)
    engine_form = _loss("VggLoss", layers=["pool5"], criterion="mse", normalize=False, allow_random_init=True)
    engine_form.load_state_dict(seed_form.state_dict())
    assert len(seed_form.vgg) == 37  # every layer of features runs
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(seed_form(x, y), engine_form(x, y))
    torch.testing.assert_close(seed_form(x, y), F.mse_loss(seed_form.vgg(x), seed_form.vgg(y)))
    with pytest.raises(ConfigError, match="does not exist"):  # vgg_path is weights_path
        _loss("VggLoss", vgg_path=str(tmp_path / "nope.pth"), vgg_arch="vgg19")
    with pytest.raises(ConfigError, match="vgg_arch 'vgg16' is not built by engine, which has VGG19 only"):
        _loss("VggLoss", vgg_path=str(tmp_path / "nope.pth"), vgg_arch="vgg16")
    with pytest.raises(ConfigError, match="weights_path and vgg_path .* disagree"):
        _loss("VggLoss", weights_path="a.pth", vgg_path="b.pth")
