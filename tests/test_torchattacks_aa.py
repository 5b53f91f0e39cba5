"""AutoAttack ``version: torchattacks-3.3`` against torchattacks 3.3.0 called as ADR's
robust_eval.py calls it (github.com/yuyuwu5/ADR, src/robust_eval.py)."""

from __future__ import annotations

import pytest
import torch

from _eval_fixtures import one_thread, tiny_cnn, tiny_linear_model  # noqa: F401 (autouse)
from soften.evaluation.attacks import autoattack_attack

torchattacks = pytest.importorskip("torchattacks")


def adr_robust_eval(model, x, y, eps, n_classes, seed, batch_size):
    """robust_eval.py's loop without its data loader: the package's AutoAttack, batch by
    batch, in eval mode; robust = the returned image is still classified correctly."""
    model.eval()
    attacker = torchattacks.AutoAttack(model, eps=eps, n_classes=n_classes, seed=seed)
    flags = []
    for i in range(0, len(x), batch_size):
        adv = attacker(x[i:i + batch_size], y[i:i + batch_size])
        with torch.no_grad():
            flags.append(model(adv).argmax(1) == y[i:i + batch_size])
    return torch.cat(flags)


def inputs(n, seed=1, shape=(3, 8, 8)):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def test_package_is_the_version_adr_pins():
    from importlib.metadata import version

    assert version("torchattacks") == "3.3.0"


def test_equals_direct_torchattacks_call():
    batch_size = 7  # not a divisor of 12: the last batch is short, as a test loader's can be
    model = tiny_linear_model()
    x = inputs(12)  # in both batches some points survive APGD, APGD-T and FAB and reach Square
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two clean mistakes: never robust
    eps = 2 / 255  # small enough that some points survive APGD and reach FAB and Square
    expected = adr_robust_eval(model, x, y, eps, n_classes=10, seed=0, batch_size=batch_size)
    out = autoattack_attack(model, x, y, {"eps": eps, "version": "torchattacks-3.3", "seed": 0,
                                          "aa_batch_size": batch_size})
    assert torch.equal(out.mask, expected)
    assert not out.mask[:2].any()
    assert out.details["package"] == "torchattacks==3.3.0"


def test_bn_model_is_attacked_in_eval_mode_and_restored():
    model = tiny_cnn(channels=3)
    x = inputs(12, seed=2)
    with torch.no_grad():
        y = model(x).argmax(1)
    expected = adr_robust_eval(model, x, y, 4 / 255, n_classes=10, seed=0, batch_size=12)
    model.train()
    running = model[1].running_mean.clone()
    out = autoattack_attack(model, x, y, {"eps": 4 / 255, "version": "torchattacks-3.3", "seed": 0,
                                          "aa_batch_size": 12})
    assert model.training and torch.equal(model[1].running_mean, running)
    assert torch.equal(out.mask, expected)


def test_standard_version_is_the_weaker_one_the_issue_names():
    """torchattacks' standard AutoAttack: 10 iterations for APGD-CE, APGD-T and FAB-T,
    n_classes - 1 targets, Square 5,000 queries (reference: 100, 100, 100, 9 targets)."""
    from soften.evaluation.torchattacks_aa import build

    aa = build(tiny_linear_model(classes=100), eps=8 / 255, n_classes=100, seed=0)
    apgd, apgdt, fab, square = aa._autoattack.attacks
    assert (apgd.steps, apgdt.steps, fab.steps) == (10, 10, 10)
    assert (apgdt.n_target_classes, fab.n_target_classes) == (99, 99)
    assert square.n_queries == 5000 and apgd.loss == "ce" and fab.multi_targeted


def test_unknown_setting_is_refused():
    from soften.evaluation.torchattacks_aa import build

    with pytest.raises(ValueError, match="apgd.n_iter"):
        build(tiny_linear_model(), eps=8 / 255, n_classes=10, seed=0, settings={"apgd.n_iter": 2})
