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
