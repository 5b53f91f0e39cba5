"""Training objectives: how the training input is crafted and the loss formed.

Every objective scores its label-bearing logits against the refiner's
:class:`~soften.labels.Target` (hard, smoothed, SGLR, ADR, ...), so a
refiner composes with any objective:

- ``standard``: loss = H(target, f(x)) on clean inputs.
- ``pgd-at`` (Madry et al. 2018; SGLR Eq. 1, ADR Eq. 1-2): x' = PGD maximising
  the per-sample loss against the attack target (random start in the eps-ball,
  ``threat.steps`` steps of ``threat.alpha``); loss = H(target, f(x')).
- ``trades`` (Zhang et al. 2019): x' maximises KL(f(x) || f(x')) from
  x + 0.001 * N(0, 1) (label-free, as the official code); loss =
  H(target, f(x)) + beta * KL(softmax f(x) || softmax f(x')), batch mean,
  gradient through both terms, clean and adversarial batches in separate
  forwards (separate BN batch statistics, as the official code).
The attack runs in the BatchNorm mode ``training.attack_bn_mode``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from soften.attacks import model_mode, pgd
from soften.labels.base import Outputs, Target


def _target_loss(logits: torch.Tensor, target: Target) -> torch.Tensor:
    return target.per_sample(logits)


class Objective:
    name = "standard"
    adversarial = False

    def __init__(self, params: dict[str, Any], threat: dict[str, Any], attack_train_mode: bool):
        self.params = dict(params)
        self.threat = dict(threat)
        self.attack_train_mode = attack_train_mode

    def craft(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        return x

    def forward(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> Outputs:
        logits = model(x)
        return Outputs(logits=logits, x_adv=x, logits_adv=logits, logits_nat=logits)

    def loss(self, out: Outputs, target: Target) -> torch.Tensor:
        return target.loss(out.logits)


class PGDAT(Objective):
    name = "pgd-at"
    adversarial = True

    def craft(self, model, x, target):
        with model_mode(model, train=self.attack_train_mode):
            if target.is_hard:  # the plain PGD-AT path, exactly as before refiners existed
                return pgd(model, x, target.label, eps=self.threat["eps"], alpha=self.threat["alpha"], steps=self.threat["steps"])
            return pgd(model, x, target, eps=self.threat["eps"], alpha=self.threat["alpha"],
                       steps=self.threat["steps"], loss=_target_loss)

    def forward(self, model, x, x_adv):
        logits = model(x_adv)
        return Outputs(logits=logits, x_adv=x_adv, logits_adv=logits)


def trades_kl(logits_nat: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_nat) || softmax(logits_adv)), averaged over the batch."""
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.log_softmax(logits_nat.float(), dim=1),
                    reduction="batchmean", log_target=True)


def trades_attack(model: nn.Module, x: torch.Tensor, *, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """TRADES' inner maximisation of KL(f(x) || f(x')) in the L-inf ball (no labels)."""
    x = x.detach()
    with torch.no_grad():
        p_nat = F.softmax(model(x).float(), dim=1)
    x_adv = x + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), p_nat, reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach().clamp_(0, 1)


class TRADES(Objective):
    name = "trades"
    adversarial = True

    def craft(self, model, x, target):
        with model_mode(model, train=self.attack_train_mode):
            return trades_attack(model, x, eps=self.threat["eps"], alpha=self.threat["alpha"], steps=self.threat["steps"])

    def forward(self, model, x, x_adv):
        logits_nat = model(x)
        logits_adv = model(x_adv)
        return Outputs(logits=logits_nat, x_adv=x_adv, logits_adv=logits_adv, logits_nat=logits_nat)

    def loss(self, out, target):
        return target.loss(out.logits_nat) + float(self.params["beta"]) * trades_kl(out.logits_nat, out.logits_adv)


OBJECTIVE_CLASSES: dict[str, type[Objective]] = {"standard": Objective, "pgd-at": PGDAT, "trades": TRADES}


def build_objective(name: str, params: dict[str, Any], threat: dict[str, Any], attack_train_mode: bool) -> Objective:
    if name not in OBJECTIVE_CLASSES:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVE_CLASSES)}")
    return OBJECTIVE_CLASSES[name](params, threat, attack_train_mode)
