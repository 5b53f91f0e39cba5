"""Method names parse into objective + refiner + extras; hyperparameters merge and validate."""

from __future__ import annotations

import pytest

from soften.training.methods import COMPONENT_DEFAULTS, method_params, parse_method


@pytest.mark.parametrize("name, objective, refiner, extras", [
    ("standard", "standard", "hard", ()),
    ("pgd-at", "pgd-at", "hard", ()),
    ("trades+sglr", "trades", "sglr", ()),
    ("pgd-at+adr+awp+wa", "pgd-at", "adr", ("awp", "wa")),
    ("pgd-at+awp", "pgd-at", "hard", ("awp",)),
    ("kd-at", "pgd-at", "kd-at", ()),
    ("kd-swa", "pgd-at", "kd-swa", ("swa",)),
    ("kd-at+wa", "pgd-at", "kd-at", ("wa",)),
])
def test_parse(name, objective, refiner, extras):
    spec = parse_method(name)
    assert (spec.name, spec.objective, spec.refiner, spec.extras) == (name, objective, refiner, extras)


@pytest.mark.parametrize("name", ["sglr", "pgd-at+sglr+adr", "pgd-at+wa+sglr", "pgd-at+wa+wa", "pgd-at+wa+swa", "kd-swa+wa", "pgd"])
def test_parse_rejects(name):
    with pytest.raises(ValueError):
        parse_method(name)


def test_awp_gamma_follows_the_paper_of_the_combination():
    assert method_params("pgd-at+awp", {})["awp"]["gamma"] == 0.01         # Wu et al. AT-AWP
    assert method_params("pgd-at+adr+awp", {})["awp"]["gamma"] == 0.005    # ADR §5.1
    assert method_params("trades+awp", {})["awp"]["gamma"] == 0.005        # TRADES-AWP
    assert method_params("pgd-at+awp", {"awp": {"gamma": 0.02}})["awp"]["gamma"] == 0.02


def test_overrides_merge_and_validate():
    p = method_params("trades+sglr", {"sglr": {"r": 0.4}, "adr": {"lam_low": 0.1}})
    assert p["sglr"]["r"] == 0.4 and p["sglr"]["temperature"] == COMPONENT_DEFAULTS["sglr"]["temperature"]
    assert set(p) == {"trades", "sglr"}
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        method_params("pgd-at+sglr", {"sglr": {"beta": 1}})
    with pytest.raises(ValueError, match="init"):
        method_params("pgd-at+sglr", {"sglr": {"init": "uniform"}})
    assert COMPONENT_DEFAULTS["sglr"]["r"] == 0.2   # defaults are not mutated
