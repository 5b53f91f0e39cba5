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
  gradient through both terms. ``trades.code`` picks whose implementation's
  forward passes (and so BatchNorm running statistics) to follow; see
  :data:`TRADES_CODES`.
The attack runs in the BatchNorm mode ``training.attack_bn_mode`` (TRADES: unless
its ``code`` fixes the mode, as the official, SGLS and ADR code do).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from soften.attacks import model_mode, pgd
from soften.labels.base import Outputs, Target
from soften.training.methods import CHOICES


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


def trades_attack(model: nn.Module, x: torch.Tensor, *, eps: float, alpha: float, steps: int,
                  start: str = "normal") -> torch.Tensor:
    """TRADES' inner maximisation of KL(f(x) || f(x')) in the L-inf ball (no labels), from
    x + 0.001 * N(0, 1) (``start="normal"``, official code) or x + 0.001 * U[0, 1)
    (``"uniform"``, ADR's ``src/util/trades_attack.py``)."""
    x = x.detach()
    with torch.no_grad():
        p_nat = F.softmax(model(x).float(), dim=1)
    noise = torch.rand_like(x) if start == "uniform" else torch.randn_like(x)
    x_adv = x + 0.001 * noise
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), p_nat, reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach().clamp_(0, 1)


#: Whose TRADES forward passes ``trades.code`` follows (docs/methods.md, "``trades.code``
#: — whose forward passes"). The loss and its gradient are the same in all but ``adr``;
#: what differs is which passes update BatchNorm's running statistics, in which order:
#:
#: - ``soften``: attack in ``training.attack_bn_mode``; train-mode f(x), then f(x').
#: - ``official``: yaodongyu/TRADES ``trades.py::trades_loss``: attack in eval mode;
#:   train-mode f(x), f(x'), then f(x) again (the KL target).
#: - ``sgls``: devicerxx/SGLS ``losses/__pycache__/trades.cpython-38.pyc``, class ``TRADES``
#:   (= LayneH/self-adaptive-training ``losses/trades.py``): attack in eval mode;
#:   train-mode f(x) (both loss terms), then f(x').
#: - ``adr``: yuyuwu5/ADR ``src/util/trades_attack.py::TRADES.attack`` and
#:   ``src/advTrainer.py::AdvTrainer._train_one_epoch``: attack in train mode from
#:   x + 0.001 * U[0, 1); one train-mode forward of cat([x, x']), whose BatchNorm
#:   batch statistics mix both halves (this changes the loss too).
TRADES_CODES = CHOICES["code"]


class TRADES(Objective):
    name = "trades"
    adversarial = True

    def __init__(self, params, threat, attack_train_mode):
        super().__init__(params, threat, attack_train_mode)
        self.code = self.params.get("code", "soften")
        if self.code not in TRADES_CODES:
            raise ValueError(f"trades.code must be one of {TRADES_CODES}, got {self.code!r}")

    def craft(self, model, x, target):
        train = {"soften": self.attack_train_mode, "official": False, "sgls": False, "adr": True}[self.code]
        with model_mode(model, train=train):
            return trades_attack(model, x, eps=self.threat["eps"], alpha=self.threat["alpha"],
                                 steps=self.threat["steps"], start="uniform" if self.code == "adr" else "normal")

    def forward(self, model, x, x_adv):
        if self.code == "adr":
            logits = model(torch.cat([x, x_adv]))
            logits_nat, logits_adv = logits[:len(x)], logits[len(x):]
        else:
            logits_nat = model(x)
            logits_adv = model(x_adv)
            if self.code == "official":
                # The official KL target is this second f(x): the same values as logits_nat (same
                # weights, same batch), so the same gradient; only its BN update is kept.
                with torch.no_grad():
                    model(x)
        return Outputs(logits=logits_nat, x_adv=x_adv, logits_adv=logits_adv, logits_nat=logits_nat)

    def loss(self, out, target):
        return target.loss(out.logits_nat) + float(self.params["beta"]) * trades_kl(out.logits_nat, out.logits_adv)


OBJECTIVE_CLASSES: dict[str, type[Objective]] = {"standard": Objective, "pgd-at": PGDAT, "trades": TRADES}


def build_objective(name: str, params: dict[str, Any], threat: dict[str, Any], attack_train_mode: bool) -> Objective:
    if name not in OBJECTIVE_CLASSES:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVE_CLASSES)}")
    return OBJECTIVE_CLASSES[name](params, threat, attack_train_mode)
