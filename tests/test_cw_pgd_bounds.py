"""CW-inf and PGD stay inside the eps-ball and [0, 1]; the CW loss is the reference margin loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _eval_fixtures import one_thread, tiny_cnn  # noqa: F401 (autouse)
from soften.attacks import cw_loss, logit_margin, pgd
from soften.evaluation.attacks import ATTACK_KINDS, pgd_examples
from soften.evaluation.transfer import craft_examples

EPS = 8 / 255


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((16, 3, 8, 8), generator=g)
    x[:4] = 0.0  # images on the box boundary: projection and clamping must both hold
    x[4:8] = 1.0
    y = torch.randint(0, 10, (16,), generator=g)
    return x, y


def assert_in_ball(x_adv, x, eps):
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


@pytest.mark.parametrize("loss", ["ce", "cw"])
@pytest.mark.parametrize("alpha", [2 / 255, 0.5])  # also a step far larger than eps
def test_pgd_and_cw_respect_eps_ball_and_box(batch, loss, alpha):
    model = tiny_cnn(channels=3)
    x, y = batch
    x_adv = pgd(model, x, y, eps=EPS, alpha=alpha, steps=7, loss=loss)
    assert_in_ball(x_adv, x, EPS)
    assert (x_adv - x).abs().max().item() > 0  # it did move


def test_pgd_with_soft_labels_respects_bounds(batch):
    model = tiny_cnn(channels=3)
    x, y = batch
    soft = 0.8 * F.one_hot(y, 10).float() + 0.2 / 10
    assert_in_ball(pgd(model, x, soft, eps=EPS, alpha=EPS / 4, steps=5), x, EPS)


def test_evaluation_kinds_respect_bounds(batch):
    model = tiny_cnn(channels=3)
    x, y = batch
    for kind in ("pgd", "cw"):
        params = {"kind": kind, "eps": EPS, "steps": 5}
        assert_in_ball(craft_examples(model, x, y, params), x, EPS)
        mask = ATTACK_KINDS[kind](model, x, y, params)
        assert mask.dtype == torch.bool and mask.shape == y.shape
    assert_in_ball(pgd_examples(model, x, y, {"eps": EPS, "steps": 3}), x, EPS)


def test_margin_by_hand():
    z = torch.tensor([[1.0, 3.0, 2.0], [0.0, 5.0, -1.0]])
    assert logit_margin(z, torch.tensor([0, 1])).tolist() == [2.0, -5.0]  # 3-1 ; max(0,-1)-5
    assert cw_loss(z, torch.tensor([0, 1]), kappa=0.5).tolist() == [0.5, -5.0]


def test_cw_gradient_matches_reference_formulation():
    """Reference (CAT/FAT/GAIRAT 'cwloss'): -clamp(z_y - max_{j!=y} z_j + kappa, min=0)."""
    torch.manual_seed(0)
    z = (torch.randn(32, 10) * 30).requires_grad_(True)
    y = torch.randint(0, 10, (32,))
    onehot = F.one_hot(y, 10).float()
    real = (onehot * z).sum(1)
    other = ((1 - onehot) * z - onehot * 10000).max(1)[0]
    ref = -torch.clamp(real - other + 50.0, min=0).sum()
    (g_ref,) = torch.autograd.grad(ref, z)
    (g_ours,) = torch.autograd.grad(cw_loss(z, y).sum(), z)
    assert torch.allclose(g_ref, g_ours)


def test_cw_attack_lowers_accuracy_of_an_undefended_model():
    model = tiny_cnn(channels=3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand((64, 3, 8, 8), generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    mask = ATTACK_KINDS["cw"](model, x, y, {"kind": "cw", "eps": 0.3, "steps": 10})
    assert mask.float().mean().item() < 0.5
