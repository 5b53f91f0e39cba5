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


def draw_augmentation(sizes: list[int], *, crop_padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """The random crop offsets and flips of consecutive batches of ``sizes`` images, drawn at once.

    Rows (dy, dx, flip) x images, int64 on the CPU; the numbers are those
    :func:`augment_batch` would draw batch by batch from the same generator state
    (per batch: dy, then dx, then the flip coins). One tensor per epoch is one
    host-to-device copy, where three per step each made the GPU wait for the host.
    """
    rows = []
    for n in sizes:
        p = crop_padding
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator) if p > 0 else torch.zeros(n, dtype=torch.long)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator) if p > 0 else torch.zeros(n, dtype=torch.long)
        coin = (torch.rand(n, generator=generator) < 0.5).long() if flip else torch.zeros(n, dtype=torch.long)
        rows.append(torch.stack([dy, dx, coin]))
    return torch.cat(rows, dim=1) if rows else torch.zeros(3, 0, dtype=torch.long)


def apply_augmentation(x: torch.Tensor, draws: torch.Tensor, *, crop_padding: int, flip: bool) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, as ``draws``
    (rows dy, dx, flip for the images of ``x``, on ``x``'s device) say.

    ``x`` is float N x C x H x W. Zero padding matches torchvision's
    ``RandomCrop(size, padding=p)`` used by the reference implementations.
    """
    n, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy, dx = draws[0], draws[1]
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        x = torch.where(draws[2].bool()[:, None, None, None], x.flip(3), x)
    return x


def augment_batch(
    x: torch.Tensor, *, crop_padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """One batch's crop and flip (:func:`apply_augmentation`), its random numbers drawn
    on the CPU ``generator`` so that results do not depend on the device."""
    draws = draw_augmentation([x.shape[0]], crop_padding=crop_padding, flip=flip, generator=generator)
    return apply_augmentation(x, draws.to(x.device), crop_padding=crop_padding, flip=flip)


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
