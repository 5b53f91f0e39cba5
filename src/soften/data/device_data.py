"""Training data held as tensors on the training device, augmented there in batches.

No per-image Python loader sits on the hot path: images stay uint8 on the device
(4x smaller than float), each batch is gathered by index, converted to [0, 1]
floats, and augmented with batched tensor ops driven by an explicit generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def to_tensor_images(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous().to(device)


def augment_batch(
    x: torch.Tensor, *, crop_padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample.

    ``x`` is float N x C x H x W. Zero padding matches torchvision's
    ``RandomCrop(size, padding=p)`` used by the reference implementations.
    Random numbers are drawn on the CPU generator so results do not depend on
    the device.
    """
    n, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


@dataclass
class DeviceData:
    """One split as device tensors: uint8 images and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray, device: torch.device) -> "DeviceData":
        """From uint8 NHWC images and integer labels (numpy) to uint8 NCHW / int64 tensors on ``device``."""
        return cls(to_tensor_images(x, device), torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> "DeviceData":
        """The first ``n`` examples (all when ``n`` is None or not smaller than the split)."""
        if n is None or n >= len(self):
            return self
        return DeviceData(self.images[:n], self.labels[:n])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples at ``index``: float images in [0, 1] (N, C, H, W) and int64 labels."""
        return self.images[index].float().div_(255.0), self.labels[index]

    def batches(self, batch_size: int):
        """Yield ``(x, y)`` in order (for evaluation)."""
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            yield self.images[sl].float().div_(255.0), self.labels[sl]
