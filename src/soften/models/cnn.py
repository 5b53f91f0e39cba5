"""The small CNNs of the CPU demo (``cnn``, ``cnn-wide``)."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """A small CNN for 8x8 digits and quick CPU experiments (any input size).

    Two conv blocks with BatchNorm (so the BN-mode choices of adversarial
    training matter here as they do for ResNets), global average pooling, and
    a linear head.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, width_factor: float = 1.0):
        super().__init__()
        # width_factor: the smoke scale's cut, as models.resnet.scaled (not imported: this module's
        # source must stand alone in a RobustBench export, soften.tools.robustbench)
        width = max(1, round(width * width_factor))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        """Logits (N, num_classes) of normalised images (N, C, H, W)."""
        return self.head(self.features(x))


def wide_cnn(num_classes: int = 10, in_channels: int = 1, width_factor: float = 1.0) -> SmallCNN:
    """SmallCNN at twice the width (32/64 channels, ~4x the parameters): a
    bigger, different source model for black-box transfer attacks on the CPU
    demo, as SGLR crafts on ResNet-34/50 to attack ResNet-18."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=32, width_factor=width_factor)
