"""Self-Guided Label Refinement (SGLR; Yu et al., CVPR 2024, §3.1, Eq. 6-8, Alg. 1).

Per training sample i a bank row p~_i holds an EMA of the model's own
temperature-scaled predictions, interpolated between clean and adversarial
inputs; the training target mixes it with the hard label:

- f~_i = lam * softmax(f(x_i)/T) + (1 - lam) * softmax(f(x'_i)/T)   (Eq. 7, detached)
- p~_i <- alpha * p~_i + (1 - alpha) * f~_i                         (Eq. 8, before the target)
- y_i  = r * p~_i + (1 - r) * onehot(y_i)                           (Eq. 8)

With ``init='zeros'`` (Algorithm 1) a row visited k times sums to
1 - alpha^k, so the target sums to 1 - r * alpha^k: not yet a distribution
early on (the deficit is 0.2 * 0.9^k with the defaults, under 0.025 after 20
visits). With ``init='onehot'`` the row starts at the sample's one-hot label
and every target sums to 1. Before ``start_epoch`` the target is the hard
label and the bank is not touched.

The "SGLS" variant of the authors' released code (devicerxx/SGLS) is this
class with init='onehot', r=1 (target = the bank itself), T=1, lam=0.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soften.labels.base import Batch, Outputs, Refiner, Setup, Target, one_hot, register
from soften.models.bn import clean_forward

INITS = ("zeros", "onehot")


class SGLR:
    """The SGLR label bank of one training set (``num_samples`` rows of ``num_classes``)."""

    def __init__(self, num_samples: int, num_classes: int, *, r: float = 0.2, temperature: float = 1.5,
                 alpha: float = 0.9, lam: float = 0.2, init: str = "zeros", start_epoch: int = 1,
                 device: torch.device | str | None = None):
        if init not in INITS:
            raise ValueError(f"SGLR init must be one of {INITS}, got {init!r}")
        if not (0 <= r <= 1 and 0 <= alpha <= 1 and 0 <= lam <= 1 and temperature > 0):
            raise ValueError(f"SGLR needs r, alpha, lam in [0, 1] and temperature > 0; got r={r}, alpha={alpha}, lam={lam}, T={temperature}")
        self.num_classes = num_classes
        self.r, self.temperature, self.alpha, self.lam = float(r), float(temperature), float(alpha), float(lam)
        self.init, self.start_epoch = init, int(start_epoch)
        self.bank = torch.zeros(num_samples, num_classes, device=device)
        # 'onehot': a row is set to its sample's one-hot label the first time the sample is seen
        # (labels are fixed per sample, so this equals initialising from the whole label vector).
        self.seen = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def active(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def _rows(self, index: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        rows = self.bank[index]
        if self.init == "onehot":
            rows = torch.where(self.seen[index, None], rows, hard)
        return rows

    @torch.no_grad()
    def peek(self, index: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        """The target from the bank as it stands (before this step's update); hard label before start_epoch."""
        hard = one_hot(y, self.num_classes)
        if not self.active(epoch):
            return hard
        return self.r * self._rows(index, hard) + (1.0 - self.r) * hard

    @torch.no_grad()
    def targets(self, index: torch.Tensor, y: torch.Tensor, logits_clean: torch.Tensor | None,
                logits_adv: torch.Tensor, epoch: int) -> torch.Tensor:
        """Update the rows of ``index`` (Eq. 7-8) and return the targets [B, K].

        Before ``start_epoch`` returns one-hot labels and leaves the bank alone
        (``logits_clean`` may then be None).
        """
        hard = one_hot(y, self.num_classes)
        if not self.active(epoch):
            return hard
        T = self.temperature
        f = self.lam * F.softmax(logits_clean.detach().float() / T, dim=1) + (1.0 - self.lam) * F.softmax(logits_adv.detach().float() / T, dim=1)
        rows = self.alpha * self._rows(index, hard) + (1.0 - self.alpha) * f
        self.bank[index] = rows
        self.seen[index] = True
        return self.r * rows + (1.0 - self.r) * hard

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"bank": self.bank, "seen": self.seen}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.bank.copy_(state["bank"])
        self.seen.copy_(state["seen"])


@register("sglr", "sgls")
class SGLRRefiner(Refiner):
    """SGLR inside the training loop.

    The adversarial logits come from the training forward. The clean logits
    come from the objective when it computes them anyway (TRADES' natural
    term; 'standard', where x' = x); otherwise (PGD-AT) from one extra
    forward without gradient, whose BatchNorm handling is ``clean_bn``
    ('batch': batch statistics, running statistics untouched).
    ``attack_target: refined`` attacks the target formed from the bank before
    this step's update (the current step's f~ needs x', which does not exist yet).
    """

    def __init__(self, params, setup: Setup):
        super().__init__(params, setup)
        self.sglr = SGLR(setup.num_samples, setup.num_classes, r=params["r"], temperature=params["temperature"],
                         alpha=params["alpha"], lam=params["lam"], init=params["init"],
                         start_epoch=params["start_epoch"], device=setup.device)
        self.attack_refined = params["attack_target"] == "refined"
        self.clean_bn = params["clean_bn"]

    def before_attack(self, batch: Batch) -> Target:
        if self.attack_refined and self.sglr.active(batch.epoch):
            return Target(self.sglr.peek(batch.index, batch.y, batch.epoch))
        return Target(batch.y)

    def targets(self, batch: Batch, out: Outputs) -> Target:
        if not self.sglr.active(batch.epoch):
            return Target(batch.y)
        if out.logits_nat is not None:
            clean = out.logits_nat.detach()
        elif self.sglr.lam == 0:  # the clean term has no weight: skip its forward
            clean = out.logits_adv
        else:
            clean = clean_forward(batch.model, batch.x, self.clean_bn)
        return Target(self.sglr.targets(batch.index, batch.y, clean, out.logits_adv, batch.epoch))

    def state_dict(self):
        return self.sglr.state_dict()

    def load_state_dict(self, state):
        self.sglr.load_state_dict(state)
