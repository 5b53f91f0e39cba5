import pytest
import torch

from soften.models import ARCHS, build_model


def test_normalisation_lives_inside_the_model():
    torch.manual_seed(0)
    mean, std = [0.2, 0.4, 0.6], [0.5, 0.25, 0.1]
    model = build_model("cnn", num_classes=10, in_channels=3, mean=mean, std=std).eval()
    x = torch.rand(2, 3, 8, 8)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.net(manual))
    assert "mean" in model.state_dict() and "std" in model.state_dict()


@pytest.mark.parametrize("arch", ["preactresnet18", "resnet18"])
def test_resnets_take_32x32_inputs(arch):
    model = build_model(arch, num_classes=100, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", num_classes=10, in_channels=3, mean=[0] * 3, std=[1] * 3)


def test_parameter_counts_match_the_literature():
    # PreActResNet-18 and ResNet-18 (CIFAR stems) have ~11.17M parameters.
    for arch in ("preactresnet18", "resnet18"):
        net = ARCHS[arch](num_classes=10, in_channels=3)
        n = sum(p.numel() for p in net.parameters())
        assert 11.1e6 < n < 11.3e6, (arch, n)
    # WRN-34-10 (Zagoruyko & Komodakis; the AT literature's large model): ~46.16M.
    n = sum(p.numel() for p in ARCHS["wrn34-10"](num_classes=10, in_channels=3).parameters())
    assert 46.1e6 < n < 46.2e6, n


def _convs(net):
    return [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in net.modules()
            if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_the_smoke_scale_width_keeps_the_architecture_and_divides_its_channels(arch):
    """width_factor (the smoke scale's 1/8) changes channel counts only: the same convolutions
    in the same order with the same kernels and strides, each width the published one / 8."""
    full, smoke = ARCHS[arch](num_classes=10, in_channels=3), ARCHS[arch](num_classes=10, in_channels=3, width_factor=0.125)
    pairs = list(zip(_convs(full), _convs(smoke)))
    assert len(pairs) == len(_convs(full)) == len(_convs(smoke))
    for (fi, fo, fk, fs), (si, so, sk, ss) in pairs:
        assert (fk, fs) == (sk, ss)
        assert si == (3 if fi == 3 else max(1, round(fi / 8))) and so == max(1, round(fo / 8))


def test_wrn34_10_at_the_smoke_width_has_the_hand_counted_channels():
    # Zagoruyko & Komodakis: widths 16, 16k, 32k, 64k with k = 10; at 1/8: 2, 20, 40, 80.
    net = ARCHS["wrn34-10"](num_classes=10, in_channels=3, width_factor=0.125)
    outs = [c[1] for c in _convs(net)]
    assert outs[0] == 2 and set(outs[1:]) == {20, 40, 80} and net.linear.in_features == 80


def test_a_smoke_width_checkpoint_rebuilds_its_own_width(tmp_path):
    from soften.io import save_torch
    from soften.models.checkpoint import load_model, model_checkpoint

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, width_factor=0.125)
    args = {"arch": "resnet18", "num_classes": 10, "in_channels": 3, "width_factor": 0.125}
    save_torch(model_checkpoint(model.state_dict(), spec={}, model_args=args, epoch=1, metrics={}), tmp_path / "best.pt")
    loaded, _ = load_model(tmp_path / "best.pt")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    with pytest.raises(ValueError, match="width_factor"):
        build_model("resnet18", num_classes=10, in_channels=3, mean=[0] * 3, std=[1] * 3, width_factor=2)
