"""Normalisation inside the model, so that attacks see [0, 1] pixels."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """Wrap a network so it accepts [0, 1] images and normalises internally.

    Attacks then work in pixel space, where eps and the [0, 1] box are defined,
    and a checkpoint carries its own normalisation (as in RobustBench).
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images ``x`` in [0, 1], (N, C, H, W); normalised per channel, then the net."""
        return self.net((x - self.mean) / self.std)
