"""Weight averaging: the EMA of weights (WA, ADR's teacher) and SWA (KD-SWA).

- :class:`EMA`: theta_ema <- decay * theta_ema + (1 - decay) * theta after every
  optimizer step, starting from a copy of the initial model (ADR Alg. 1 line 1,
  §5.3). Every floating-point entry of the state dict is averaged, BatchNorm
  running statistics included, as timm's ModelEmaV2 used by the ADR code does;
  integer buffers (BN batch counters) are copied. No BN re-estimation.
- :class:`SWA`: equal-weight running average of the parameters, one sample
  per epoch from ``start_epoch`` (Izmailov et al. 2018; Chen et al. 2021),
  followed by a recomputation of the BatchNorm statistics on the training set.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn


def _frozen_copy(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class EMA:
    """An exponential moving average of a model's weights (``module``: the averaged twin)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 <= decay <= 1:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.module = _frozen_copy(model)
        self._pairs: tuple | None = None  # (source model, float avg, float new, other avg, other new)

    def _tensors(self, model: nn.Module):
        """The (average, current) tensor lists, built once per source model: a state dict
        holds references to the live tensors, so the lists stay valid across steps."""
        if self._pairs is None or self._pairs[0] is not model:
            current = model.state_dict(keep_vars=True)
            avg_f, new_f, avg_o, new_o = [], [], [], []
            for name, avg in self.module.state_dict(keep_vars=True).items():
                new = current[name]
                if avg.dtype.is_floating_point:
                    avg_f.append(avg.data)
                    new_f.append(new.data)
                else:
                    avg_o.append(avg.data)
                    new_o.append(new.data)
            self._pairs = (model, avg_f, new_f, avg_o, new_o)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights: avg <- decay * avg + (1 - decay) * w."""
        avg_f, new_f, avg_o, new_o = self._tensors(model)
        # lerp: avg + (1 - decay) * (new - avg) == decay * avg + (1 - decay) * new, and leaves
        # entries that do not change (normalisation buffers) exactly as they are. One foreach
        # call instead of a kernel per tensor: the same arithmetic, far fewer GPU launches.
        if avg_f:
            torch._foreach_lerp_(avg_f, new_f, 1.0 - self.decay)
        for avg, new in zip(avg_o, new_o):
            avg.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        """``{"model": averaged weights}``, for the resume state."""
        return {"model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["model"])


class SWA:
    """Stochastic weight averaging: an equal-weight average of sampled weights (``module``)."""

    def __init__(self, model: nn.Module):
        self.module = _frozen_copy(model)
        self.n_averaged = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """swa <- swa + (w - swa) / (n + 1) over the parameters (the first call copies w)."""
        for avg, p in zip(self.module.parameters(), model.parameters()):
            if self.n_averaged == 0:
                avg.copy_(p.detach())
            else:
                avg.add_((p.detach() - avg) / (self.n_averaged + 1))
        self.n_averaged += 1

    @torch.no_grad()
    def recompute_bn(self, batches: Iterable[torch.Tensor]) -> None:
        """Reset the BN running statistics and re-estimate them as a cumulative
        average over ``batches`` of clean inputs (torch.optim.swa_utils.update_bn)."""
        torch.optim.swa_utils.update_bn(batches, self.module)
        self.module.eval()

    def state_dict(self) -> dict[str, Any]:
        """``{"model": averaged weights, "n_averaged": samples so far}``, for the resume state."""
        return {"model": self.module.state_dict(), "n_averaged": self.n_averaged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["model"])
        self.n_averaged = int(state["n_averaged"])
