"""Objectives: TRADES against its formula, PGD-AT's hard-label path unchanged."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from soften.attacks import pgd
from soften.labels import Target
from soften.training.objectives import build_objective, trades_attack, trades_kl

THREAT = {"eps": 0.1, "alpha": 0.025, "steps": 5}


def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.BatchNorm1d(3)).train()


def test_trades_kl_by_hand():
    nat = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]))
    adv = torch.log(torch.tensor([[0.25, 0.25, 0.5], [0.2, 0.2, 0.6]]))
    # row 1: 0.5 log 2 + 0.25 log 1 + 0.25 log 0.5 = 0.25 log 2; row 2: 0; batch mean
    assert trades_kl(nat, adv).item() == pytest.approx(0.125 * math.log(2), abs=1e-6)


@pytest.mark.parametrize("soft", [False, True])
def test_trades_loss_matches_formula(soft):
    model = toy_model()
    objective = build_objective("trades", {"beta": 6.0}, THREAT, attack_train_mode=False)
    x = torch.rand(4, 1, 3, 4)
    y = torch.tensor([0, 1, 2, 1])
    torch.manual_seed(1)
    x_adv = objective.craft(model, x, Target(y))
    out = objective.forward(model, x, x_adv)
    target = Target(torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])) if soft else Target(y)
    loss = objective.loss(out, target)
    # direct formula: mean_i [ -sum_k t_ik log p_ik ] + 6 * mean_i sum_k p_ik (log p_ik - log q_ik)
    p = torch.softmax(out.logits_nat.detach().double(), 1)
    q = torch.softmax(out.logits_adv.detach().double(), 1)
    t = target.label.double() if soft else torch.eye(3, dtype=torch.double)[y]
    expected = (-(t * p.log()).sum(1)).mean() + 6.0 * (p * (p.log() - q.log())).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # gradient flows through both the natural and the adversarial branch
    loss.backward()
    assert model[1].weight.grad.abs().sum() > 0


def test_trades_attack_stays_in_ball_and_raises_kl():
    model = toy_model().eval()
    x = torch.rand(8, 1, 3, 4)
    torch.manual_seed(2)
    x_adv = trades_attack(model, x, eps=0.1, alpha=0.025, steps=10)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        kl = trades_kl(model(x), model(x_adv))
    assert kl > 1e-4


def test_pgd_at_hard_path_is_plain_pgd_and_cross_entropy():
    model = toy_model()
    objective = build_objective("pgd-at", {}, THREAT, attack_train_mode=False)
    x = torch.rand(4, 1, 3, 4)
    y = torch.tensor([0, 1, 2, 1])
    torch.manual_seed(3)
    x_adv = objective.craft(model, x, Target(y))
    torch.manual_seed(3)
    model.eval()
    expected = pgd(model, x, y, **THREAT)
    model.train()
    assert torch.equal(x_adv, expected)
    out = objective.forward(model, x, x_adv)
    assert torch.equal(out.logits, out.logits_adv) and out.logits_nat is None
    assert torch.equal(objective.loss(out, Target(y)), F.cross_entropy(out.logits.float(), y))


def test_pgd_at_soft_attack_target_uses_soft_cross_entropy():
    model = toy_model()
    objective = build_objective("pgd-at", {}, THREAT, attack_train_mode=False)
    x = torch.rand(4, 1, 3, 4)
    soft = torch.tensor([[0.7, 0.2, 0.1]] * 4)
    torch.manual_seed(4)
    x_adv = objective.craft(model, x, Target(soft))
    torch.manual_seed(4)
    model.eval()
    expected = pgd(model, x, soft, **THREAT)   # ce_loss with probability rows
    assert torch.equal(x_adv, expected)


def test_standard_objective_trains_on_clean_inputs():
    model = toy_model()
    objective = build_objective("standard", {}, THREAT, attack_train_mode=False)
    assert not objective.adversarial
    x = torch.rand(4, 1, 3, 4)
    assert objective.craft(model, x, Target(torch.zeros(4, dtype=torch.long))) is x
    out = objective.forward(model, x, x)
    assert out.logits_nat is out.logits and out.logits_adv is out.logits
