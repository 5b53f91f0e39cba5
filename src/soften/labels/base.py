"""The interface between the training loop and a label refiner.

A refiner turns the (possibly noisy) hard label of each training sample into
the target the loss is computed against. The loop calls it twice per batch:

1. :meth:`Refiner.before_attack` -> the :class:`Target` the training attack
   maximises against (the hard label for most methods; ADR's rectified label);
2. :meth:`Refiner.targets` -> the :class:`Target` of the training loss, given
   the objective's forward :class:`Outputs` (SGLR needs the adversarial logits);

then :meth:`Refiner.after_step` once the optimizer has stepped (ADR's EMA
teacher). State that must survive a restart (SGLR's bank, ADR's teacher) is
exposed through ``state_dict``/``load_state_dict`` and saved in ``last.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from soften.attacks.pgd import ce_loss


@dataclass
class Target:
    """What a batch is scored against; the per-sample loss of logits ``z`` is

    ``label_weight * H(label, softmax(z))``
    ``+ sum_j w_j * T_j^2 * H(p_j, softmax(z / T_j))``  for ``(w_j, p_j, T_j)`` in ``distill``
    ``+ consistency_weight * mean_k (softmax(z)_k - consistency_k)^2``

    where ``H(p, q) = -sum_k p_k log q_k`` and ``label`` holds class indices
    ([B], i.e. one-hot) or probability rows ([B, K]). The distillation terms
    are Hinton et al.'s T^2-scaled soft cross-entropy (KD-AT/KD-SWA); the
    consistency term is temporal ensembling's MSE (Dong et al. 2022).
    """

    label: torch.Tensor
    label_weight: float = 1.0
    distill: tuple[tuple[float, torch.Tensor, float], ...] = ()
    consistency: torch.Tensor | None = None
    consistency_weight: float = 0.0

    @property
    def is_hard(self) -> bool:
        """Plain cross-entropy on class indices (the PGD-AT path, kept bit-identical)."""
        return (not self.label.dtype.is_floating_point and self.label_weight == 1.0 and not self.distill
                and (self.consistency is None or self.consistency_weight == 0))

    def per_sample(self, logits: torch.Tensor) -> torch.Tensor:
        loss = ce_loss(logits, self.label)
        if self.label_weight != 1.0:
            loss = self.label_weight * loss
        if self.distill:
            z = logits.float()
            for weight, probs, temperature in self.distill:
                loss = loss - weight * temperature**2 * (probs * F.log_softmax(z / temperature, dim=1)).sum(1)
        if self.consistency is not None and self.consistency_weight != 0:
            loss = loss + self.consistency_weight * (F.softmax(logits.float(), dim=1) - self.consistency).square().mean(1)
        return loss

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Batch mean of :meth:`per_sample`."""
        if self.is_hard:
            return F.cross_entropy(logits.float(), self.label)
        return self.per_sample(logits).mean()


@dataclass
class Batch:
    """One training step as the components see it."""

    model: nn.Module
    index: torch.Tensor          # dataset indices of the samples (for per-sample banks)
    x: torch.Tensor              # clean (augmented) inputs in [0, 1]
    y: torch.Tensor              # training labels (possibly noisy), class indices
    epoch: int                   # 1-based
    iteration: int = 0           # 0-based global step
    total_iterations: int = 1    # epochs * steps per epoch (ADR's schedules)


@dataclass
class Outputs:
    """The objective's training forward: ``logits`` is what the label target scores."""

    logits: torch.Tensor
    x_adv: torch.Tensor
    logits_adv: torch.Tensor | None = None   # f(x') (for 'standard', x' = x)
    logits_nat: torch.Tensor | None = None   # f(x) when the objective computed it anyway (TRADES, standard)


@dataclass
class Setup:
    """What a component needs to know about the run when it is built."""

    num_samples: int
    num_classes: int
    model: nn.Module
    device: torch.device
    teachers: list[dict[str, Any]] = field(default_factory=list)


class Refiner:
    """Hard labels; the base class of every refiner."""

    name = "hard"

    def __init__(self, params: dict[str, Any], setup: Setup):
        self.params = dict(params)
        self.num_classes = setup.num_classes

    def before_attack(self, batch: Batch) -> Target:
        return Target(batch.y)

    def targets(self, batch: Batch, out: Outputs) -> Target:
        return Target(batch.y)

    def after_step(self, model: nn.Module) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


REFINER_CLASSES: dict[str, Callable[[dict[str, Any], Setup], Refiner]] = {}


def register(*names: str):
    def deco(cls):
        for name in names:
            REFINER_CLASSES[name] = cls
        return cls
    return deco


def build_refiner(name: str, params: dict[str, Any], setup: Setup) -> Refiner:
    if name not in REFINER_CLASSES:
        raise ValueError(f"unknown label refiner {name!r}; known: {sorted(REFINER_CLASSES)}")
    refiner = REFINER_CLASSES[name](params, setup)
    refiner.name = name
    return refiner


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float()
