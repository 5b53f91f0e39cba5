"""Temporal ensembling for adversarial training (TE; Dong et al., ICLR 2022).

Per training sample a bank row P_i (zeros at the start) follows the model's
clean predictions; the normalised row is a consistency target:

- P_i <- alpha * P_i + (1 - alpha) * softmax(f(x_i))   (clean input, eval-mode BN)
- p_i = P_i / sum_k P_ik                               (undoes the zero start)
- loss = CE(f(x'), y) + w(epoch) * mean_k (softmax(f(x'))_k - p_ik)^2
- w(epoch) = reg_weight * exp(-5 (1 - (epoch - start) / (end - start))^2) on
  [start, end], 0 before, reg_weight after (Laine & Aila's ramp-up).

Before ``start_epoch`` this is plain PGD-AT and no extra forward is made.
With ``attack_target: refined`` (the official code) the consistency term is
also part of the attack objective.
"""

from __future__ import annotations

import math

import torch

from soften.labels.base import Batch, Outputs, Refiner, Setup, Target, register
from soften.models.bn import clean_forward


def sigmoid_rampup(epoch: int, start: int, end: int) -> float:
    """0 before ``start``, 1 after ``end``, exp(-5 (1 - t)^2) in between (t = progress)."""
    if epoch < start:
        return 0.0
    if epoch > end or end <= start:
        return 1.0
    phase = 1.0 - (epoch - start) / (end - start)
    return math.exp(-5.0 * phase * phase)


class TemporalBank:
    """The per-sample EMA of predictions (pure tensor state, no model)."""

    def __init__(self, num_samples: int, num_classes: int, *, alpha: float, device=None):
        self.alpha = float(alpha)
        self.bank = torch.zeros(num_samples, num_classes, device=device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """EMA-update the rows of ``index`` with ``probs``; return the normalised rows."""
        rows = self.alpha * self.bank[index] + (1.0 - self.alpha) * probs.float()
        self.bank[index] = rows
        return rows / rows.sum(1, keepdim=True)

    def state_dict(self):
        return {"bank": self.bank}

    def load_state_dict(self, state):
        self.bank.copy_(state["bank"])


@register("te")
class TemporalEnsembling(Refiner):
    def __init__(self, params, setup: Setup):
        super().__init__(params, setup)
        self.bank = TemporalBank(setup.num_samples, setup.num_classes, alpha=params["alpha"], device=setup.device)
        self.start, self.end = int(params["start_epoch"]), int(params["ramp_end_epoch"])
        self.reg_weight = float(params["reg_weight"])
        self.attack_refined = params["attack_target"] == "refined"
        self.clean_bn = params["clean_bn"]
        self._target: Target | None = None

    def before_attack(self, batch: Batch) -> Target:
        if batch.epoch < self.start:
            self._target = Target(batch.y)
            return self._target
        probs = torch.softmax(clean_forward(batch.model, batch.x, self.clean_bn), dim=1)
        normalised = self.bank.update(batch.index, probs)
        weight = self.reg_weight * sigmoid_rampup(batch.epoch, self.start, self.end)
        self._target = Target(batch.y, consistency=normalised, consistency_weight=weight)
        return self._target if self.attack_refined else Target(batch.y)

    def targets(self, batch: Batch, out: Outputs) -> Target:
        return self._target

    def state_dict(self):
        return self.bank.state_dict()

    def load_state_dict(self, state):
        self.bank.load_state_dict(state)
