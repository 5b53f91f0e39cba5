"""Evaluation batch sizes that fit the device: sized from the model and the input, and halved on OOM.

An attack's batch keeps every activation of the forward pass for the input
gradient; per image that is ~4.5 MiB for ResNet-18 on 32x32 inputs, ~22 MiB for
WRN-34-10, ~88 MiB for WRN-34-10 on 64x64 (fp32; issue 20), so one fixed batch
size (AutoAttack's 500, monitoring's 256) needs ~43 GiB for WRN-34-10 on
TinyImageNet. :func:`fit_batch_size` caps a configured batch size at what the
GPU's free memory holds, from the bytes the autograd graph saves for one image
(:func:`saved_bytes_per_image`, measured with saved-tensor hooks: the same on
any device); :func:`halving_on_oom` retries a call that still runs out of memory
at half the batch. On the CPU nothing is capped (its memory is the host's), so
CPU results do not change.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable

import torch

from soften.attacks.pgd import model_mode

log = logging.getLogger("soften.memory")

#: The share of the GPU's free memory an evaluation batch's saved activations may take: the rest
#: holds the model, the attack's own tensors (inputs, perturbations, gradients) and allocator slack.
FREE_FRACTION = 0.5


def _saved_bytes(model: torch.nn.Module, shape: tuple[int, ...], batch: int, device) -> int:
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    x = torch.zeros(batch, *shape, device=device, requires_grad=True)
    # Eagerly, even for a compiled model: these small batches would otherwise cost compilations (and graphs).
    eager = torch.compiler.set_stance("force_eager") if hasattr(torch.compiler, "set_stance") else contextlib.nullcontext()
    # Eval mode, as the attacks run: a training-mode forward would move the BatchNorm statistics.
    with model_mode(model, train=False), eager, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return total


def saved_bytes_per_image(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device | str) -> int:
    """Bytes the autograd graph saves per image of ``shape`` (C, H, W) in an input-gradient pass:
    a batch of two less a batch of one, so the weights (saved once per batch) do not count."""
    return _saved_bytes(model, shape, 2, device) - _saved_bytes(model, shape, 1, device)


def free_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA ``device`` (None elsewhere: no cap)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def largest_fitting(requested: int, per_image: int, free: int | None, fraction: float = FREE_FRACTION) -> int:
    """``requested``, or the largest batch whose saved activations take at most ``fraction`` of ``free``."""
    if free is None or per_image <= 0:
        return requested
    return max(1, min(requested, int(free * fraction) // per_image))


def fit_batch_size(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device, requested: int, what: str) -> int:
    """The batch size ``what`` runs with on ``device``: ``requested`` where it fits, else smaller (logged)."""
    free = free_bytes(device)
    if free is None:
        return requested
    per_image = saved_bytes_per_image(model, shape, device)
    size = largest_fitting(requested, per_image, free)
    if size < requested:
        log.warning("%s: batch size %d -> %d (%.1f MiB saved per image, %.1f GiB free on %s)", what, requested, size,
                    per_image / 2**20, free / 2**30, device)
    return size


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (older PyTorch raises a plain RuntimeError saying so)."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def halving_on_oom(call: Callable[[int], Any], batch_size: int, what: str) -> tuple[Any, int]:
    """``call(batch_size)``, retried at half the batch while it runs out of memory; returns
    (its result, the batch size that ran). Each halving is logged."""
    while True:
        try:
            return call(batch_size), batch_size
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_oom(err) or batch_size <= 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("%s ran out of memory at batch size %d; retrying at %d", what, batch_size, batch_size // 2)
            batch_size //= 2
