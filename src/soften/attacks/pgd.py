"""Projected gradient descent under the L-inf threat model (Madry et al. 2018)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy; ``y`` holds class indices or probability rows."""
    if y.dtype.is_floating_point:
        return -(y * F.log_softmax(logits.float(), dim=1)).sum(1)
    return F.cross_entropy(logits.float(), y, reduction="none")


def _cw(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from soften.attacks.cw import cw_loss

    return cw_loss(logits, y)


#: Named losses for ``pgd(loss=...)``: cross-entropy and the CW-inf margin (kappa 50).
LOSSES: dict[str, LossFn] = {"ce": ce_loss, "cw": _cw}


@contextlib.contextmanager
def model_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train or eval mode, restoring every submodule's mode after."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield model
    finally:
        for m, mode in saved:
            m.training = mode


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    loss: str | LossFn = "ce",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD maximising ``loss(model(x_adv), y)``; returns detached ``x_adv``.

    - ``x``: images in [0, 1]; ``y``: class indices, probability rows, or
      whatever a custom ``loss`` expects (e.g. clean logits for TRADES' KL).
    - ``random_start``: uniform noise in [-eps, eps] before the first step.
    - Each step ascends ``alpha * sign(grad)``, projects onto the eps-ball around
      ``x`` and clamps to [0, 1]. The model's mode is left as the caller set it,
      and parameter gradients are untouched (gradients are taken w.r.t. inputs only).
    """
    if eps < 0 or alpha < 0 or steps < 0:
        raise ValueError(f"pgd needs non-negative eps, alpha, steps; got {eps}, {alpha}, {steps}")
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    x = x.detach()
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
        delta = (noise.to(x.device, x.dtype) * 2 - 1) * eps
        x_adv = (x + delta).clamp_(0, 1)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        value = loss_fn(model(x_adv), y).sum()
        (grad,) = torch.autograd.grad(value, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach()
