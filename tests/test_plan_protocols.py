"""`plan` prices the authors'-code protocols: test selection's whole-test-set PGD per epoch,
the best_test evaluations, and torchattacks' AutoAttack (all other classes as targets)."""

import copy
from pathlib import Path

import pytest

from soften.pipeline import layout
from soften.tools import plan
from soften.pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adr():
    return load_config([REPO / "config" / "adr.yaml"], {"results_dir": "/nonexistent/results"})


def test_test_selection_adds_a_whole_test_set_pgd10_per_epoch(adr):
    figures = plan.reference()
    run = layout.Run("cifar10", "none", "resnet18", "pgd-at", 0)
    sound = copy.deepcopy(adr)
    sound["training"]["select_on"] = ["validation"]
    extra = plan.train_hours(adr, run, figures) - plan.train_hours(sound, run, figures)
    # 200 epochs x 10,000 test images x PGD-10 (clean + 10 x 2 + adversarial = 22 forward units)
    by_hand = 200 * 10_000 * 22 * figures.unit_s("resnet18") / 3600
    assert extra == pytest.approx(by_hand)


def test_torchattacks_autoattack_units_grow_with_the_classes():
    # APGD-CE 10 x 2 on 84%, APGD-T (C - 1) x 10 x 2 on 52%, FAB-T (C - 1) x 10 x 3 on 49%, Square 5000 on 49%
    assert plan.aa_torchattacks_units(10) == pytest.approx(16.8 + 93.6 + 132.3 + 2450)
    assert plan.aa_torchattacks_units(200) == pytest.approx(16.8 + 0.52 * 3980 + 0.49 * 5970 + 2450)


def test_best_test_evaluations_are_priced(adr):
    jobs = plan.evaluation_jobs(adr, "tab1", plan.reference())
    paths = {p for _, p, _ in jobs}
    run = layout.Run("cifar100", "none", "resnet18", "pgd-at", 0)
    assert layout.eval_path(adr, run, "best_test", "aa-adr-code") in paths
    hours = {p: h for _, p, h in jobs}
    # torchattacks on CIFAR-100 (99 targets) costs its units, the reference AutoAttack its own
    ratio = hours[layout.eval_path(adr, run, "best_test", "aa-adr-code")] / hours[layout.eval_path(adr, run, "best_test", "aa")]
    assert ratio == pytest.approx(plan.aa_torchattacks_units(100) / plan.AA_UNITS)
