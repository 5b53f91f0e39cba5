"""Method names and their hyperparameters.

A method name is ``OBJECTIVE[+REFINER][+EXTRA...]``, e.g. ``pgd-at``,
``trades+sglr`` or ``pgd-at+adr+awp``. The objective says how inputs are
perturbed and the loss formed; the refiner turns the (possibly noisy) hard
label into the training target; extras act in weight space.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

#: Default hyperparameters per method component; the config's ``methods:``
#: section overrides them key by key.
COMPONENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "standard": {},
    "pgd-at": {},
}
OBJECTIVES = ("standard", "pgd-at")
REFINERS = ("hard",)
EXTRAS: tuple[str, ...] = ()


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
    parts = name.split("+")
    objective, rest = parts[0], parts[1:]
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}: objective {objective!r} is not one of {OBJECTIVES}")
    refiner, extras = "hard", []
    for part in rest:
        if part in REFINERS and refiner == "hard" and not extras:
            refiner = part
        elif part in EXTRAS and part not in extras:
            extras.append(part)
        else:
            raise ValueError(
                f"unknown method {name!r}: {part!r} is not a label refiner {REFINERS} "
                f"(at most one, right after the objective) or an extra {EXTRAS}"
            )
    return MethodSpec(name, objective, refiner, tuple(extras))


def method_params(name: str, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = parse_method(name)
    out = {}
    for comp in spec.components:
        params = copy.deepcopy(COMPONENT_DEFAULTS.get(comp, {}))
        extra = overrides.get(comp, {})
        unknown = set(extra) - set(params)
        if unknown:
            raise ValueError(f"unknown hyperparameters for {comp!r}: {sorted(unknown)}; known: {sorted(params)}")
        params.update(extra)
        out[comp] = params
    return out
