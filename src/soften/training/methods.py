"""Method names and their hyperparameters.

A method name is ``OBJECTIVE[+REFINER][+EXTRA...]``, e.g. ``pgd-at``,
``trades+sglr`` or ``pgd-at+adr+awp+wa``. The objective says how inputs are
perturbed and the loss formed (soften.training.objectives); the refiner turns
the (possibly noisy) hard label into the training target (soften.labels);
extras act in weight space (soften.training.extras). ``kd-at`` and
``kd-swa`` are names for ``pgd-at+kd-at`` and ``pgd-at+kd-swa+swa`` (and
may take further extras: ``kd-at+wa``).
See docs/methods.md for the equations and where every default comes from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

#: Default hyperparameters per method component: the papers' settings (CIFAR,
#: 200 epochs). The config's ``methods:`` section (then ``datasets.<name>.methods``)
#: overrides them key by key.
COMPONENT_DEFAULTS: dict[str, dict[str, Any]] = {
    # ---- objectives
    "standard": {},           # CE on clean inputs (SGLR §4 noisy-label experiments)
    "pgd-at": {},             # PGD-10, step 2/255, eps 8/255 come from the dataset's threat model (SGLR §4, Rice et al. 2020)
    "trades": {
        "beta": 6.0,          # Zhang et al. 2019; ADR §5.1 "beta = 6 as outlined in the original paper"
                              # (SGLR does not state it)
        "code": "soften",     # whose forward passes (BN running statistics): soften.training.objectives.TRADES_CODES;
                              # config/sglr.yaml and config/adr.yaml choose their authors' code
    },
    # ---- label refiners
    "hard": {},
    "ls": {
        "r": 0.2,                 # SGLR Eq. 5, §4 "Comparison against other methods" (Tab. 2)
        "attack_target": "hard",  # SGLR is silent; plain PGD-AT attack
    },
    "te": {                       # Dong et al. ICLR 2022, official code (dongyp13/memorization-AT) defaults
        "alpha": 0.9,             # --te-alpha
        "reg_weight": 300.0,      # --reg-weight (the MSE is averaged over classes)
        "start_epoch": 90,        # --start-es (epochs counted from 1)
        "ramp_end_epoch": 150,    # --end-es
        "attack_target": "refined",  # the official attack maximises CE + consistency
        "clean_bn": "eval",       # the bank is fed by an eval-mode clean forward
    },
    "sglr": {
        "r": 0.2,                 # SGLR §4 "impact of r", Tab. 4 (best)
        "temperature": 1.5,       # SGLR Tab. 4: T = 1.5 with r = 0.2 reproduces the Tab. 2 SGLR row
        "alpha": 0.9,             # not stated in the paper; the authors' code (devicerxx/SGLS) uses 0.9
        "lam": 0.2,               # not stated in the paper; the authors' code weights the clean term 0.2
        "init": "zeros",          # Algorithm 1 (App. C): p~ = 0
        "start_epoch": 1,         # Algorithm 1 refines from the first epoch
        "attack_target": "hard",  # Algorithm 1: delta <- argmax l(f(x + delta), y_hard)
        "clean_bn": "batch",      # the extra clean forward of PGD-AT leaves BN running stats alone
    },
    "sgls": {                     # the authors' released code (devicerxx/SGLS, losses/loss.py + main_adv.py)
        "r": 1.0,                 # target = the bank itself
        "temperature": 1.0,       # plain softmax
        "alpha": 0.9,             # --sgls-alpha
        "lam": 0.2,               # 0.2 * clean + 0.8 * adversarial
        "init": "onehot",         # bank starts at the one-hot labels
        "start_epoch": 90,        # the scripts' ES=90 (the argparse default es=0 refines from epoch 1)
        "attack_target": "hard",
        "clean_bn": "update",     # the code's clean forward is a train-mode forward (updates BN stats)
    },
    "adr": {                      # ADR §5.1 (CIFAR-10; per-dataset values in docs/methods.md)
        "ema_decay": 0.995,       # teacher EMA decay (§5.1)
        "temperature_high": 2.5,  # tau annealed 2.5 -> 2 (§5.1, CIFAR-10)
        "temperature_low": 2.0,
        "lam_low": 0.7,           # lambda annealed 0.7 -> 0.95 (§5.1, CIFAR-10)
        "lam_high": 0.95,
    },
    "kd-at": {                    # one adversarial teacher: Chen et al.'s loss without the standard teacher
        "teachers": {"pgd-at": 0.6},          # coef_kd2 = 0.6; CE keeps 1 - 0.6
        "temperature": 2.0,
    },
    "kd-swa": {                   # Chen et al. ICLR 2021 (VITA-Group/Alleviate-Robust-Overfitting defaults)
        "teachers": {"standard": 0.1, "pgd-at": 0.6},  # coef_kd1, coef_kd2; coef_ce = 0.3
        "temperature": 2.0,
    },
    # ---- weight-space extras
    "awp": {
        "gamma": None,            # None: 0.01 for PGD-AT without ADR (Wu et al. 2020 AT-AWP),
                                  # 0.005 otherwise (ADR §5.1; Wu et al. TRADES-AWP)
        "start_epoch": 1,         # AT-AWP and ADR: no warm-up (TRADES-AWP code: 10)
    },
    "wa": {"decay": 0.995},       # ADR §5.1 / §5.3
    "swa": {"start_epoch": 56},   # Chen et al. code: swa_start 55 (0-based) = epoch 56, after the first LR decay (50)
}
#: Where each default comes from (``show-config --run`` prints it beside the value).
COMPONENT_SOURCES: dict[str, str] = {
    "trades.beta": "Zhang et al. 2019; ADR §5.1 ('beta = 6 as in the original paper')",
    "trades.code": "soften choice; the papers' configs use their authors' code (docs/methods.md)",
    "ls.r": "SGLR §4 'Comparison against other methods' (Tab. 2)",
    "ls.attack_target": "SGLR silent; the plain PGD-AT attack (docs/methods.md)",
    "te.alpha": "Dong et al. 2022 official code --te-alpha",
    "te.reg_weight": "Dong et al. 2022 official code --reg-weight",
    "te.start_epoch": "Dong et al. 2022 official code --start-es (of 200 epochs)",
    "te.ramp_end_epoch": "Dong et al. 2022 official code --end-es (of 200 epochs)",
    "te.attack_target": "Dong et al. 2022 official code (attack includes the consistency term)",
    "te.clean_bn": "Dong et al. 2022 official code (eval-mode bank forward)",
    "sglr.r": "SGLR §4, Tab. 4",
    "sglr.temperature": "SGLR Tab. 4 (T = 1.5 with r = 0.2 reproduces the Tab. 2 row)",
    "sglr.alpha": "SGLR silent; authors' code devicerxx/SGLS",
    "sglr.lam": "SGLR silent; authors' code devicerxx/SGLS",
    "sglr.init": "SGLR Algorithm 1",
    "sglr.start_epoch": "SGLR Algorithm 1",
    "sglr.attack_target": "SGLR Algorithm 1",
    "sglr.clean_bn": "soften choice (docs/methods.md, SGLR point 5)",
    "adr.ema_decay": "ADR §5.1",
    "adr.temperature_high": "ADR §5.1 (CIFAR-10)",
    "adr.temperature_low": "ADR §5.1 (CIFAR-10)",
    "adr.lam_low": "ADR §5.1",
    "adr.lam_high": "ADR §5.1",
    "kd-at.teachers": "Chen et al. 2021 code coef_kd2 (docs/methods.md)",
    "kd-at.temperature": "Chen et al. 2021 code",
    "kd-swa.teachers": "Chen et al. 2021 code coef_kd1, coef_kd2",
    "kd-swa.temperature": "Chen et al. 2021 code",
    "awp.gamma": "Wu et al. 2020 code: 0.01 for PGD-AT, 0.005 for TRADES; ADR §5.1: 0.005",
    "awp.start_epoch": "Wu et al. 2020 AT-AWP code, ADR code",
    "wa.decay": "ADR §5.1",
    "swa.start_epoch": "Chen et al. 2021 code swa_start (of 200 epochs)",
}
COMPONENT_SOURCES.update({f"sgls.{k}": "authors' code devicerxx/SGLS (docs/methods.md)" for k in COMPONENT_DEFAULTS["sgls"]})
OBJECTIVES = ("standard", "pgd-at", "trades")
REFINERS = ("hard", "ls", "te", "sglr", "sgls", "adr", "kd-at", "kd-swa")
EXTRAS: tuple[str, ...] = ("awp", "wa", "swa")
ALIASES: dict[str, str] = {"kd-at": "pgd-at+kd-at", "kd-swa": "pgd-at+kd-swa+swa"}

#: Hyperparameters that take one of a few values.
CHOICES: dict[str, tuple[str, ...]] = {
    "attack_target": ("hard", "refined"),
    "clean_bn": ("batch", "eval", "update"),
    "code": ("soften", "official", "sgls", "adr"),  # TRADES' forward passes (soften.training.objectives)
    "init": ("zeros", "onehot"),
}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    objective: str
    refiner: str = "hard"
    extras: tuple[str, ...] = ()

    @property
    def components(self) -> tuple[str, ...]:
        return (self.objective, self.refiner, *self.extras)


def parse_method(name: str) -> MethodSpec:
    first, *rest = name.split("+")
    objective, *implied = ALIASES.get(first, first).split("+")
    rest = [*implied, *rest]
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}: objective {objective!r} is not one of {OBJECTIVES} (or a name in {sorted(ALIASES)})")
    refiner, extras = "hard", []
    for part in rest:
        if part in REFINERS and refiner == "hard" and not extras:
            refiner = part
        elif part in EXTRAS and part not in extras:
            extras.append(part)
        else:
            raise ValueError(
                f"unknown method {name!r}: {part!r} is not a label refiner {REFINERS} "
                f"(at most one, right after the objective) or an extra {EXTRAS} (each at most once)"
            )
    if "wa" in extras and "swa" in extras:
        raise ValueError(f"method {name!r}: 'wa' and 'swa' both choose the evaluated model; use one")
    return MethodSpec(name, objective, refiner, tuple(extras))


def _check_value(comp: str, key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise ValueError(f"{comp}.{key} must be one of {CHOICES[key]}, got {value!r}")


def method_params(name: str, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Hyperparameters of every component of ``name``: defaults, then ``overrides[component]``."""
    spec = parse_method(name)
    out = {}
    for comp in spec.components:
        params = copy.deepcopy(COMPONENT_DEFAULTS.get(comp, {}))
        extra = overrides.get(comp) or {}
        unknown = set(extra) - set(params)
        if unknown:
            raise ValueError(f"unknown hyperparameters for {comp!r}: {sorted(unknown)}; known: {sorted(params)}")
        params.update(copy.deepcopy(extra))
        for key, value in params.items():
            _check_value(comp, key, value)
        out[comp] = params
    if "awp" in out and out["awp"]["gamma"] is None:
        plain_at = spec.objective == "pgd-at" and spec.refiner != "adr"
        out["awp"]["gamma"] = 0.01 if plain_at else 0.005
    return out


def teacher_methods(name: str, params: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Teacher method -> weight for a distillation method (empty for the others)."""
    spec = parse_method(name)
    return dict(params.get(spec.refiner, {}).get("teachers", {}) or {})
