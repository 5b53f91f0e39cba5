"""Label smoothing (SGLR Eq. 5): y_LS = (r / K) * 1 + (1 - r) * y_hard."""

from __future__ import annotations

import torch

from soften.labels.base import Batch, Outputs, Refiner, Setup, Target, one_hot, register


def smooth_labels(y: torch.Tensor, num_classes: int, r: float) -> torch.Tensor:
    """SGLR Eq. 5: the true class gets 1 - r + r/K, every other class r/K."""
    return r / num_classes + (1.0 - r) * one_hot(y, num_classes)


@register("ls")
class LabelSmoothing(Refiner):
    """``r`` (0.2, SGLR §4) and ``attack_target``: 'hard' (the attack of plain
    PGD-AT; SGLR does not say) or 'refined' (the attack maximises CE against y_LS)."""

    def __init__(self, params, setup: Setup):
        super().__init__(params, setup)
        self.r = float(params["r"])
        self.attack_refined = params["attack_target"] == "refined"

    def before_attack(self, batch: Batch) -> Target:
        if self.attack_refined:
            return Target(smooth_labels(batch.y, self.num_classes, self.r))
        return Target(batch.y)

    def targets(self, batch: Batch, out: Outputs) -> Target:
        return Target(smooth_labels(batch.y, self.num_classes, self.r))
