"""Model zoo. Every model takes [0, 1] inputs; normalisation is a buffer inside it.

Part of the research library: the networks and what acts on a model as a whole,
whoever calls it: weight averages (EMA/SWA, ``averaging``), BatchNorm modes (``bn``),
checkpoint saving and loading (``checkpoint``).

May import: the floor (``io``, ``errors``, ``devices``) and ``attacks`` (an attack's train/eval mode switch).
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from soften.models.cnn import SmallCNN, wide_cnn
from soften.models.normalize import Normalized
from soften.models.resnet import preact_resnet18, resnet18, resnet34, resnet50, wide_resnet34_10

ARCHS: dict[str, Callable[..., nn.Module]] = {
    "cnn": SmallCNN,
    "cnn-wide": wide_cnn,
    "preactresnet18": preact_resnet18,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "wrn34-10": wide_resnet34_10,
}


def build_model(
    arch: str, *, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
    width_factor: float = 1.0,
) -> Normalized:
    """A fresh ``arch`` network (a key of :data:`ARCHS`) for ``num_classes`` classes and
    ``in_channels`` channels, wrapped to take [0, 1] images and normalise them with the
    per-channel ``mean``/``std`` of the training pixels (in [0, 1] units). ``width_factor``
    scales every layer's channels (1: the published network; the smoke scale uses less)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    if not 0 < width_factor <= 1:
        raise ValueError(f"width_factor must be in (0, 1], got {width_factor!r}")
    net = ARCHS[arch](num_classes=num_classes, in_channels=in_channels, width_factor=width_factor)
    return Normalized(net, mean, std)


__all__ = ["ARCHS", "build_model", "Normalized"]
