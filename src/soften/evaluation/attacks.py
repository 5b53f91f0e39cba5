"""Evaluation attacks: each maps (model, x, y, params) to a per-example
"still correct" boolean mask. The model is already in eval mode and fp32."""

from __future__ import annotations

from typing import Any, Callable

import torch

from soften.attacks import pgd

AttackFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]


@torch.no_grad()
def _correct(model, x, y) -> torch.Tensor:
    return model(x).argmax(1) == y


def natural(model, x, y, params):
    return _correct(model, x, y)


def pgd_attack(model, x, y, params):
    eps = params["eps"]
    steps = int(params.get("steps", 20))
    # Default step size eps/4 (2/255 for eps 8/255, as in Rice et al. and SGLR §4).
    alpha = float(params.get("alpha", eps / 4))
    x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, random_start=params.get("random_start", True))
    return _correct(model, x_adv, y)


ATTACK_KINDS: dict[str, AttackFn] = {"natural": natural, "pgd": pgd_attack}
