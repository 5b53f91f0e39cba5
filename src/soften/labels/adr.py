"""Annealing Self-Distillation Rectification (ADR; Wu, Wang & Chen, §4.2, Alg. 1).

An EMA of the student's weights is the teacher. From its prediction on the
clean input, P_t = softmax(f_teacher(x) / tau) (Eq. 3), the rectified label is

- lam_i = clip(lam - (P_t[argmax P_t] - P_t[y_i]), 0, 1)    (Eq. 4)
- P_i   = lam_i * P_t + (1 - lam_i) * onehot(y_i)            (Eq. 5)

so the true class stays (weakly) the most likely one, and a sample whose label
the teacher disagrees with gets a smaller teacher share. P is the target of
both the training attack and the training loss. tau is cosine-annealed from
``temperature_high`` to ``temperature_low`` and lam from ``lam_low`` to
``lam_high``, per iteration over the whole run (the ADR code's schedule).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from soften.labels.base import Batch, Outputs, Refiner, Setup, Target, one_hot, register
from soften.models.averaging import EMA


def adr_targets(teacher_logits: torch.Tensor, y: torch.Tensor, *, temperature: float, lam: float) -> torch.Tensor:
    """The ADR rectified label of one batch (Eq. 3-5); rows sum to 1."""
    probs = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    top = probs.max(dim=1).values
    true = probs.gather(1, y[:, None]).squeeze(1)
    lam_i = (lam - (top - true)).clamp(0.0, 1.0)[:, None]
    return lam_i * probs + (1.0 - lam_i) * one_hot(y, probs.shape[1])


def cosine_schedule(start: float, end: float, i: int, n: int) -> float:
    """end + (start - end) * (1 + cos(pi * i / n)) / 2: ``start`` at i = 0, ``end`` at i = n."""
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * i / max(n, 1)))


@register("adr")
class ADRRefiner(Refiner):
    def __init__(self, params, setup: Setup):
        super().__init__(params, setup)
        self.teacher = EMA(setup.model, params["ema_decay"])
        self._target: Target | None = None

    def schedule(self, iteration: int, total: int) -> tuple[float, float]:
        """(temperature, lam) at a 0-based global iteration."""
        p = self.params
        return (cosine_schedule(p["temperature_high"], p["temperature_low"], iteration, total),
                cosine_schedule(p["lam_low"], p["lam_high"], iteration, total))

    def before_attack(self, batch: Batch) -> Target:
        temperature, lam = self.schedule(batch.iteration, batch.total_iterations)
        with torch.no_grad():
            logits = self.teacher.module(batch.x)  # clean input, eval mode
        self._target = Target(adr_targets(logits, batch.y, temperature=temperature, lam=lam))
        return self._target

    def targets(self, batch: Batch, out: Outputs) -> Target:
        return self._target

    def after_step(self, model) -> None:
        self.teacher.update(model)

    def state_dict(self):
        return self.teacher.state_dict()

    def load_state_dict(self, state):
        self.teacher.load_state_dict(state)
