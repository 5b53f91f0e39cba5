"""Adversarial weight perturbation (AWP; Wu, Xia & Wang, NeurIPS 2020).

Per step, after the training attack: one ascent step in weight space on the
same adversarial batch, rescaled layer by layer,

    v_l = gamma * ||w_l|| * g_l / ||g_l||,   g_l = d loss / d w_l,

for every weight with more than one dimension (conv and linear kernels; BN
and biases are left alone, as the official code). The training loss is then
computed at w + v, the gradient taken there, and the weights restored
exactly (a saved copy, not a subtraction) before the optimizer applies that
gradient to w. The ascent loss is the method's training loss against the
attack target (hard label: the official AT-AWP/TRADES-AWP losses; ADR: the
rectified label, as the ADR code). Its forward uses batch statistics but
leaves the BN running statistics untouched (the official code runs it on a
throw-away proxy copy of the model).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from soften.models.bn import preserve_bn_stats


def perturbed_weights(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if p.ndim > 1 and "weight" in name]


class AWP:
    name = "awp"

    def __init__(self, params: dict[str, Any]):
        self.gamma = float(params["gamma"])
        self.start_epoch = int(params["start_epoch"])
        self._saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def perturb(self, model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]) -> None:
        """Move the weights to w + v (see module docstring); :meth:`restore` undoes it."""
        weights = perturbed_weights(model)
        with preserve_bn_stats(model):
            loss = loss_fn(model)
        grads = torch.autograd.grad(loss, weights)
        self._saved = [(w, w.detach().clone()) for w in weights]
        with torch.no_grad():
            # Every layer's two norms in two multi-tensor kernels, not two launches per layer.
            w_norms, g_norms = torch._foreach_norm(weights), torch._foreach_norm(grads)
            for w, g, w_norm, g_norm in zip(weights, grads, w_norms, g_norms):
                w.add_(g * (self.gamma * w_norm / (g_norm + 1e-20)))

    def restore(self) -> None:
        with torch.no_grad():
            for w, saved in self._saved:
                w.copy_(saved)
        self._saved = []

    # ---- the extras interface used by the training loop (see soften.training.extras)
    def before_forward(self, batch, model, loss_fn) -> None:
        if batch.epoch >= self.start_epoch and self.gamma > 0:
            self.perturb(model, loss_fn)

    def before_step(self, model) -> None:
        if self._saved:
            self.restore()

    def after_step(self, model) -> None:
        pass

    def end_epoch(self, epoch, model, batches) -> None:
        pass

    def eval_model(self):
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
