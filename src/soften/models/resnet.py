"""ResNets for 32x32 inputs (3x3 stem, no max-pool), as in the AT literature.

- ResNet-18/34/50: He et al. 2016 with the CIFAR stem used by Rice et al. and
  the SGLR paper's ResNet experiments.
- PreActResNet-18: He et al. 2016b, the robust-overfitting baseline of Rice et al.
- WRN-34-10: Zagoruyko & Komodakis, the ADR paper's large model.
Inputs larger than 32x32 (TinyImageNet) work through the adaptive pooling.

``width_factor`` scales every layer's channel count (1: the published networks). Only
the smoke scale uses another value (soften.pipeline.config.SMOKE): the same depth, blocks
and strides at a fraction of the cost.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN and a (projected) identity shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        """Features (or logits, for the nets) of a batch (N, C, H, W)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 convolutions with 4x expansion (ResNet-50)."""

    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * 4:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        """Features (or logits, for the nets) of a batch (N, C, H, W)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU before each convolution (PreActResNet-18, WRN-34-10)."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        """Features (or logits, for the nets) of a batch (N, C, H, W)."""
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def scaled(channels: int, width_factor: float) -> int:
    """``channels`` times ``width_factor``, at least one."""
    return max(1, round(channels * width_factor))


class ResNet(nn.Module):
    """A ResNet of ``block`` with ``num_blocks`` per stage (64/128/256/512 planes times
    ``width_factor``), CIFAR stem."""

    def __init__(self, block, num_blocks, num_classes=10, in_channels=3, preact=False, width_factor=1.0):
        super().__init__()
        self.preact = preact
        stem = scaled(64, width_factor)
        self.in_planes = stem
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        # Pre-activation nets apply BN+ReLU inside their first block instead.
        self.bn1 = None if preact else nn.BatchNorm2d(stem)
        layers = []
        for i, (planes, n) in enumerate(zip([scaled(p, width_factor) for p in (64, 128, 256, 512)], num_blocks)):
            for stride in [1 if i == 0 else 2] + [1] * (n - 1):
                layers.append(block(self.in_planes, planes, stride))
                self.in_planes = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        # Pre-activation nets normalise the last block's output before pooling.
        self.bn_out = nn.BatchNorm2d(self.in_planes) if preact else None
        self.linear = nn.Linear(self.in_planes, num_classes)

    def forward(self, x):
        """Features (or logits, for the nets) of a batch (N, C, H, W)."""
        out = self.conv1(x)
        if not self.preact:
            out = F.relu(self.bn1(out))
        out = self.layers(out)
        if self.preact:
            out = F.relu(self.bn_out(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class WideResNet(nn.Module):
    """WRN-depth-widen from pre-activation blocks (the AT literature's WRN-34-10), channels
    times ``width_factor``."""

    def __init__(self, depth=34, widen=10, num_classes=10, in_channels=3, width_factor=1.0):
        super().__init__()
        n = (depth - 4) // 6
        widths = [scaled(w, width_factor) for w in (16, 16 * widen, 32 * widen, 64 * widen)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, in_planes = [], widths[0]
        for i, planes in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(PreActBlock(in_planes, planes, (1 if i == 0 else 2) if j == 0 else 1))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        """Features (or logits, for the nets) of a batch (N, C, H, W)."""
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes=10, in_channels=3, width_factor=1.0):
    """ResNet-18 for ``num_classes`` classes and ``in_channels`` input channels (un-normalised: see
    models.build_model)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, width_factor=width_factor)


def resnet34(num_classes=10, in_channels=3, width_factor=1.0):
    """ResNet-34 for ``num_classes`` classes and ``in_channels`` input channels (un-normalised: see
    models.build_model)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, width_factor=width_factor)


def resnet50(num_classes=10, in_channels=3, width_factor=1.0):
    """ResNet-50 (bottleneck blocks) for ``num_classes`` classes and ``in_channels`` input channels
    (un-normalised: see models.build_model)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, width_factor=width_factor)


def preact_resnet18(num_classes=10, in_channels=3, width_factor=1.0):
    """PreActResNet-18 (Rice et al. 2020) for ``num_classes`` classes and ``in_channels`` input
    channels (un-normalised: see models.build_model)."""
    return ResNet(PreActBlock, (2, 2, 2, 2), num_classes, in_channels, preact=True, width_factor=width_factor)


def wide_resnet34_10(num_classes=10, in_channels=3, width_factor=1.0):
    """WRN-34-10 (ADR's large model) for ``num_classes`` classes and ``in_channels`` input channels
    (un-normalised: see models.build_model)."""
    return WideResNet(34, 10, num_classes, in_channels, width_factor=width_factor)
