"""Evaluation attacks: each maps (model, x, y, params) to a per-example
"still correct" boolean mask, or to an :class:`AttackOutput` that adds details
(e.g. AutoAttack's robust count after each of its attacks). The model is
already in eval mode and fp32.

Attacks marked ``whole_set`` get the whole evaluated subset in one call (they
batch internally), so their result does not depend on the evaluation batch
size: AutoAttack and Square through the reference package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from soften.attacks import pgd

#: AutoAttack ``version`` that runs torchattacks 3.3.0's standard AutoAttack, as ADR's code.
TORCHATTACKS_VERSION = "torchattacks-3.3"

AttackFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, dict[str, Any]], Any]


@dataclass
class AttackOutput:
    mask: torch.Tensor
    details: dict[str, Any] = field(default_factory=dict)
    x_adv: torch.Tensor | None = None


@torch.no_grad()
def _correct(model, x, y) -> torch.Tensor:
    return model(x).argmax(1) == y


def natural(model, x, y, params):
    return _correct(model, x, y)


def pgd_examples(model, x, y, params, loss: str = "ce") -> torch.Tensor:
    eps = params["eps"]
    steps = int(params.get("steps", 20))
    # Default step size eps/4 (2/255 for eps 8/255, as in Rice et al. and SGLR §4).
    alpha = float(params.get("alpha", eps / 4))
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, random_start=params.get("random_start", True), loss=loss)


def pgd_attack(model, x, y, params):
    return _correct(model, pgd_examples(model, x, y, params), y)


def cw_attack(model, x, y, params):
    """CW-inf: PGD on the Carlini-Wagner margin loss (20 steps, step eps/4, kappa 50 by default)."""
    from soften.attacks.cw import DEFAULT_KAPPA, cw_loss

    kappa = float(params.get("kappa", DEFAULT_KAPPA))
    x_adv = pgd_examples(model, x, y, {"steps": 20, **params}, loss=lambda z, t: cw_loss(z, t, kappa))
    return _correct(model, x_adv, y)


def _aa_options(params):
    return dict(eps=params["eps"], version=params.get("version", "standard"), seed=int(params.get("seed", 0)),
                batch_size=int(params.get("aa_batch_size", 500)), settings=params.get("settings"),
                norm=params.get("norm", "Linf"), progress=bool(params.get("progress", False)),
                state_path=params.get("state_path"))


def autoattack_attack(model, x, y, params):
    """AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square 5000 queries) via the reference package,
    or, with ``version: torchattacks-3.3``, as ADR's robust_eval.py ran it (soften.evaluation.torchattacks_aa)."""
    from soften.evaluation.autoattack import autoattack

    if params.get("version") == TORCHATTACKS_VERSION:
        from soften.evaluation.torchattacks_aa import autoattack_torchattacks

        opts = _aa_options(params)
        res = autoattack_torchattacks(model, x, y, eps=opts["eps"], seed=opts["seed"], batch_size=opts["batch_size"],
                                      norm=opts["norm"], settings=opts["settings"])
        details = {k: res[k] for k in ("version", "seed", "settings", "package", "seconds")}
        return AttackOutput(res["robust_mask"], details)

    res = autoattack(model, x, y, attacks=params.get("attacks"), **_aa_options(params))
    details = {k: res[k] for k in ("counts", "attacks", "version", "seed", "settings", "package", "seconds", "batch_size",
                                   "resumed_after")}
    return AttackOutput(res["robust_mask"], details)


def square_attack(model, x, y, params):
    """Square attack alone (black-box, score-based), with AutoAttack's settings for ``version``."""
    from soften.evaluation.autoattack import autoattack

    res = autoattack(model, x, y, attacks=["square"], return_adv=True, **_aa_options(params))
    details = {k: res[k] for k in ("counts", "version", "seed", "settings", "package", "seconds", "batch_size",
                                   "resumed_after")}
    return AttackOutput(res["robust_mask"], details, res["x_adv"])


autoattack_attack.whole_set = True
square_attack.whole_set = True

ATTACK_KINDS: dict[str, AttackFn] = {
    "natural": natural,
    "pgd": pgd_attack,
    "cw": cw_attack,
    "autoattack": autoattack_attack,
    "square": square_attack,
}
