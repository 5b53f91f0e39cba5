"""AWP and weight averaging against hand computations."""

from __future__ import annotations

import math

import torch
from torch import nn

from soften.labels import Batch
from soften.models.averaging import EMA, SWA
from soften.training.awp import AWP, perturbed_weights


def model_with_bn():
    m = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[3.0, 4.0]]))    # ||w|| = 5
        m[0].bias.fill_(0.5)
    return m.train()


def test_awp_perturbation_by_hand_and_exact_restore():
    model = model_with_bn()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]])

    def loss_fn(m):
        m(x)                                   # a train-mode forward: must not move BN statistics
        return (m[0].weight * torch.tensor([[2.0, 0.0]])).sum()   # gradient wrt W = [[2, 0]]

    awp = AWP({"gamma": 0.01, "start_epoch": 1})
    assert [p is model[0].weight for p in perturbed_weights(model)] == [True]   # 1-D params are left alone
    b = Batch(model=model, index=torch.arange(3), x=x, y=torch.zeros(3, dtype=torch.long), epoch=1)
    awp.before_forward(b, model, loss_fn)
    # v = gamma * ||w|| * g / ||g|| = 0.01 * 5 * [1, 0]
    torch.testing.assert_close(model[0].weight.detach(), torch.tensor([[3.05, 4.0]]))
    assert torch.equal(model[0].bias, original["0.bias"])
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(model.state_dict()[k], original[k])
    # training forward/backward at w + v, then restore before the optimizer step
    model(x).sum().backward()
    grad_at_perturbed = model[0].weight.grad.clone()
    awp.before_step(model)
    assert torch.equal(model[0].weight, original["0.weight"])      # bit for bit
    assert torch.equal(model[0].weight.grad, grad_at_perturbed)    # the gradient taken at w + v is kept


def test_awp_waits_for_start_epoch():
    model = model_with_bn()
    awp = AWP({"gamma": 0.01, "start_epoch": 3})
    b = Batch(model=model, index=torch.arange(1), x=torch.zeros(1, 2), y=torch.zeros(1, dtype=torch.long), epoch=2)
    awp.before_forward(b, model, lambda m: (m[0].weight ** 2).sum())
    assert torch.equal(model[0].weight, torch.tensor([[3.0, 4.0]]))
    awp.before_step(model)


def test_wa_ema_by_hand():
    model = model_with_bn()
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    # 0.9 * [3, 4] + 0.1 * [1, 0] = [2.8, 3.6]; running_mean 0.9 * 0 + 0.1 * 2 = 0.2; counter copied
    torch.testing.assert_close(ema.module[0].weight, torch.tensor([[2.8, 3.6]]))
    torch.testing.assert_close(ema.module[1].running_mean, torch.tensor([0.2]))
    assert ema.module[1].num_batches_tracked.item() == 7
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 10.0]]))
    ema.update(model)
    # 0.9 * [2.8, 3.6] + 0.1 * [0, 10] = [2.52, 4.24]
    torch.testing.assert_close(ema.module[0].weight, torch.tensor([[2.52, 4.24]]))
    torch.testing.assert_close(ema.module[0].bias, torch.tensor([0.5]))   # unchanged entries stay exact
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    # the average never writes back into the trained model
    assert torch.equal(model[0].weight, torch.tensor([[0.0, 10.0]]))
    other = EMA(model_with_bn(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module[0].weight, ema.module[0].weight)


def test_swa_equal_weight_average_and_bn_recompute():
    model = model_with_bn()
    swa = SWA(model)
    for w in ([[1.0, 1.0]], [[2.0, 4.0]], [[6.0, 1.0]]):
        with torch.no_grad():
            model[0].weight.copy_(torch.tensor(w))
        swa.update(model)
    torch.testing.assert_close(swa.module[0].weight, torch.tensor([[3.0, 2.0]]))   # arithmetic mean
    # BN statistics recomputed as the cumulative mean over the batches of the averaged model's pre-BN outputs
    xs = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 2.0], [1.0, 1.0]])]
    swa.recompute_bn(iter(xs))
    # pre-BN outputs: 3x + 2y + 0.5 -> batch 1: [3.5, 2.5] (mean 3.0), batch 2: [10.5, 5.5] (mean 8.0)
    assert math.isclose(swa.module[1].running_mean.item(), 5.5, rel_tol=1e-6)
    assert not swa.module.training
