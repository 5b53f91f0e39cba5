"""Weight-space extras: components that act on the weights around the optimizer step.

The training loop calls, per step, ``before_forward`` (AWP moves the weights),
``before_step`` (AWP restores them, after the backward pass) and
``after_step`` (WA updates its average); per epoch ``end_epoch`` (SWA); and
evaluates ``eval_model()`` instead of the student when it is not None (WA,
SWA): that model is what the per-epoch validation sees and what ``best.pt``
and ``final.pt`` hold.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from soften.models.averaging import EMA, SWA
from soften.training.awp import AWP


class Extra:
    name = "extra"

    def before_forward(self, batch, model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]) -> None:
        pass

    def before_step(self, model: nn.Module) -> None:
        pass

    def after_step(self, model: nn.Module) -> None:
        pass

    def end_epoch(self, epoch: int, model: nn.Module, batches: Callable[[], Iterable[torch.Tensor]]) -> None:
        pass

    def eval_model(self) -> nn.Module | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class WeightAveraging(Extra):
    """``+wa``: an EMA of the weights (decay 0.995, ADR §5.1/§5.3), updated after
    every optimizer step; the EMA model is the one evaluated and saved."""

    name = "wa"

    def __init__(self, params: dict[str, Any], model: nn.Module):
        self.ema = EMA(model, params["decay"])

    def after_step(self, model):
        self.ema.update(model)

    def eval_model(self):
        return self.ema.module

    def state_dict(self):
        return self.ema.state_dict()

    def load_state_dict(self, state):
        self.ema.load_state_dict(state)


class StochasticWeightAveraging(Extra):
    """``+swa``: from ``start_epoch`` on, the parameters are averaged once per
    epoch (equal weights) and the BN statistics of the average re-estimated on
    the clean training set; from then on the average is evaluated and saved."""

    name = "swa"

    def __init__(self, params: dict[str, Any], model: nn.Module):
        self.swa = SWA(model)
        self.start_epoch = int(params["start_epoch"])

    def end_epoch(self, epoch, model, batches):
        if epoch >= self.start_epoch:
            self.swa.update(model)
            self.swa.recompute_bn(batches())

    def eval_model(self):
        return self.swa.module if self.swa.n_averaged > 0 else None

    def state_dict(self):
        return self.swa.state_dict()

    def load_state_dict(self, state):
        self.swa.load_state_dict(state)


def build_extra(name: str, params: dict[str, Any], model: nn.Module):
    if name == "awp":
        return AWP(params)
    if name == "wa":
        return WeightAveraging(params, model)
    if name == "swa":
        return StochasticWeightAveraging(params, model)
    raise ValueError(f"unknown weight-space extra {name!r}; known: awp, wa, swa")
