"""Label refiners against hand computations on 3-class toys.

Logits are chosen as T * log(p) so that softmax(logits / T) = p exactly and
every expected value below can be checked with pencil and paper.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from soften.labels import SGLR, Batch, Outputs, Setup, Target, adr_targets, build_refiner, cosine_schedule, sigmoid_rampup, smooth_labels
from soften.training.methods import COMPONENT_DEFAULTS

K = 3


def logits_for(probs, temperature=1.0):
    """Logits whose softmax at ``temperature`` is ``probs``."""
    return temperature * torch.log(torch.tensor(probs, dtype=torch.float32))


def close(actual, expected, tol=1e-6):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), atol=tol, rtol=0)


def setup(num_samples=4, model=None, teachers=()):
    return Setup(num_samples=num_samples, num_classes=K, model=model if model is not None else nn.Identity(),
                 device=torch.device("cpu"), teachers=list(teachers))


def batch(y, index=None, x=None, epoch=1, iteration=0, total=100, model=None):
    y = torch.tensor(y)
    index = torch.arange(len(y)) if index is None else torch.tensor(index)
    x = torch.zeros(len(y), K) if x is None else x
    return Batch(model=model if model is not None else nn.Identity(), index=index, x=x, y=y, epoch=epoch,
                 iteration=iteration, total_iterations=total)


# ---------------------------------------------------------------- Target / hard

def test_hard_target_is_cross_entropy():
    z = logits_for([[0.25, 0.25, 0.5]])
    t = Target(torch.tensor([0]))
    assert t.is_hard
    close(t.loss(z), math.log(4))          # -log 0.25
    refiner = build_refiner("hard", {}, setup())
    b = batch([2])
    assert refiner.before_attack(b).label.tolist() == [2]
    assert refiner.targets(b, Outputs(logits=z, x_adv=b.x, logits_adv=z)).label.tolist() == [2]


def test_soft_target_cross_entropy():
    z = logits_for([[0.25, 0.25, 0.5]])
    t = Target(torch.tensor([[0.5, 0.0, 0.5]]))
    # -(0.5 log 0.25 + 0.5 log 0.5) = 0.5 * 1.386294 + 0.5 * 0.693147
    close(t.loss(z), 0.5 * math.log(4) + 0.5 * math.log(2))


# ---------------------------------------------------------------- label smoothing

def test_label_smoothing_eq5():
    # r = 0.2, K = 3: true class 1 - 0.2 + 0.2/3 = 0.866667, others 0.2/3 = 0.066667
    close(smooth_labels(torch.tensor([1]), K, 0.2), [[0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3]])
    refiner = build_refiner("ls", COMPONENT_DEFAULTS["ls"], setup())
    b = batch([0])
    assert refiner.before_attack(b).is_hard  # attack_target: hard
    z = logits_for([[0.5, 0.25, 0.25]])
    close(refiner.targets(b, Outputs(z, b.x, z)).label, [[0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]])
    refined = build_refiner("ls", {"r": 0.2, "attack_target": "refined"}, setup())
    close(refined.before_attack(b).label, [[0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]])


# ---------------------------------------------------------------- temporal ensembling

def test_te_ramp():
    assert sigmoid_rampup(89, 90, 150) == 0.0
    assert sigmoid_rampup(90, 90, 150) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(120, 90, 150) == pytest.approx(math.exp(-1.25))   # phase 1/2
    assert sigmoid_rampup(151, 90, 150) == 1.0


def test_te_bank_and_loss():
    params = {**COMPONENT_DEFAULTS["te"], "start_epoch": 90, "ramp_end_epoch": 150}
    refiner = build_refiner("te", params, setup())  # the model is the identity: x are the logits
    # before start_epoch: hard label, bank untouched
    b = batch([0], x=logits_for([[0.5, 0.25, 0.25]]), epoch=89)
    assert refiner.before_attack(b).is_hard
    assert refiner.bank.bank.abs().sum() == 0
    # first update: bank = 0.1 * p = [0.05, 0.025, 0.025]; normalised = p
    b = batch([0], x=logits_for([[0.5, 0.25, 0.25]]), epoch=120)
    t = refiner.before_attack(b)
    close(refiner.bank.bank[0], [0.05, 0.025, 0.025])
    close(t.consistency, [[0.5, 0.25, 0.25]])
    w = 300 * math.exp(-1.25)
    assert t.consistency_weight == pytest.approx(w)
    # second update with [0.25, 0.25, 0.5]: [0.07, 0.0475, 0.0725] / 0.19
    b = batch([0], x=logits_for([[0.25, 0.25, 0.5]]), epoch=120)
    t = refiner.before_attack(b)
    close(refiner.bank.bank[0], [0.07, 0.0475, 0.0725])
    close(t.consistency, [[0.07 / 0.19, 0.0475 / 0.19, 0.0725 / 0.19]])
    # loss on student probs [0.25, 0.25, 0.5], y = 0: CE = log 4, MSE = mean of squared differences
    z = logits_for([[0.25, 0.25, 0.5]])
    mse = ((0.25 - 0.07 / 0.19) ** 2 + (0.25 - 0.25) ** 2 + (0.5 - 0.0725 / 0.19) ** 2) / 3
    close(refiner.targets(b, Outputs(z, b.x, z)).loss(z), math.log(4) + w * mse, tol=1e-5)


# ---------------------------------------------------------------- SGLR

CLEAN = [[0.5, 0.25, 0.25]]  # softmax(f(x)/T)
ADV = [[0.25, 0.25, 0.5]]    # softmax(f(x')/T)
# f~ = 0.2 * CLEAN + 0.8 * ADV = [0.3, 0.25, 0.45]


def test_sglr_zeros_init_two_visits():
    T = 1.5
    s = SGLR(4, K, r=0.2, temperature=T, alpha=0.9, lam=0.2, init="zeros", start_epoch=1)
    y, idx = torch.tensor([0]), torch.tensor([2])
    t1 = s.targets(idx, y, logits_for(CLEAN, T), logits_for(ADV, T), epoch=1)
    # p~ = 0.1 * [0.3, 0.25, 0.45]; y = 0.2 * p~ + 0.8 * [1, 0, 0]
    close(s.bank[2], [0.03, 0.025, 0.045])
    close(t1, [[0.806, 0.005, 0.009]])
    assert t1.sum().item() == pytest.approx(1 - 0.2 * 0.9)   # documented deficit r * alpha^k
    t2 = s.targets(idx, y, logits_for(CLEAN, T), logits_for(ADV, T), epoch=2)
    # p~ = 0.9 * [0.03, 0.025, 0.045] + 0.1 * [0.3, 0.25, 0.45] = [0.057, 0.0475, 0.0855]
    close(s.bank[2], [0.057, 0.0475, 0.0855])
    close(t2, [[0.8114, 0.0095, 0.0171]])
    assert t2.sum().item() == pytest.approx(1 - 0.2 * 0.81)
    assert s.bank[[0, 1, 3]].abs().sum() == 0   # other rows untouched


def test_sglr_onehot_init_sums_to_one():
    s = SGLR(4, K, r=0.2, temperature=1.0, alpha=0.9, lam=0.2, init="onehot", start_epoch=1)
    t = s.targets(torch.tensor([1]), torch.tensor([0]), logits_for(CLEAN), logits_for(ADV), epoch=1)
    # p~ = 0.9 * [1, 0, 0] + 0.1 * [0.3, 0.25, 0.45] = [0.93, 0.025, 0.045]
    close(s.bank[1], [0.93, 0.025, 0.045])
    close(t, [[0.986, 0.005, 0.009]])
    assert t.sum().item() == pytest.approx(1.0)


def test_sglr_start_epoch_gives_hard_labels_and_keeps_bank():
    s = SGLR(4, K, r=0.2, temperature=1.0, alpha=0.9, lam=0.2, init="zeros", start_epoch=3)
    t = s.targets(torch.tensor([0]), torch.tensor([1]), None, logits_for(ADV), epoch=2)
    close(t, [[0.0, 1.0, 0.0]])
    assert s.bank.abs().sum() == 0
    assert s.active(3) and not s.active(2)


def test_sglr_state_dict_round_trip():
    s = SGLR(4, K, init="onehot")
    s.targets(torch.tensor([3]), torch.tensor([2]), logits_for(CLEAN), logits_for(ADV), epoch=1)
    other = SGLR(4, K, init="onehot")
    other.load_state_dict(s.state_dict())
    assert torch.equal(other.bank, s.bank) and torch.equal(other.seen, s.seen)


def test_sglr_refiner_attack_target_and_trades_clean_logits():
    params = {**COMPONENT_DEFAULTS["sglr"], "temperature": 1.0, "attack_target": "refined"}
    refiner = build_refiner("sglr", params, setup())
    b = batch([0], index=[1])
    # before any update the zero bank gives (1 - r) * onehot
    close(refiner.before_attack(b).label, [[0.8, 0.0, 0.0]])
    # TRADES-like outputs: the natural logits are reused (no extra forward: the model is never called)
    out = Outputs(logits=logits_for(CLEAN), x_adv=b.x, logits_adv=logits_for(ADV), logits_nat=logits_for(CLEAN))
    b.model = None
    close(refiner.targets(b, out).label, [[0.806, 0.005, 0.009]])
    # the next attack target reads the updated bank: 0.2 * [0.03, 0.025, 0.045] + 0.8 * onehot
    close(refiner.before_attack(b).label, [[0.806, 0.005, 0.009]])
    hard = build_refiner("sglr", COMPONENT_DEFAULTS["sglr"], setup())
    assert hard.before_attack(b).is_hard   # Algorithm 1: attack on the hard label


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(K, K), nn.BatchNorm1d(K))


@pytest.mark.parametrize("clean_bn, changes", [("batch", False), ("eval", False), ("update", True)])
def test_sglr_extra_clean_forward_bn_policy(clean_bn, changes):
    model = _bn_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refiner = build_refiner("sglr", {**COMPONENT_DEFAULTS["sglr"], "clean_bn": clean_bn}, setup(model=model))
    x = torch.randn(4, K)
    b = batch([0, 1, 2, 0], x=x, model=model)
    z = model(x)  # stands in for the training forward on x'
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = refiner.targets(b, Outputs(logits=z, x_adv=x, logits_adv=z))  # PGD-AT: no natural logits
    after = model.state_dict()
    same = all(torch.equal(before[k], after[k]) for k in before)
    assert same != changes
    z.sum().backward()   # the training graph is still intact
    # the clean predictions entered the bank: with x' = x and 'batch' stats, f~ = softmax(z / T)
    if clean_bn == "batch":
        p = torch.softmax(z.detach() / 1.5, dim=1)
        torch.testing.assert_close(refiner.sglr.bank[:4], 0.1 * p)
        torch.testing.assert_close(t.label, 0.2 * 0.1 * p + 0.8 * torch.eye(K)[[0, 1, 2, 0]])


def test_sgls_preset_target_is_the_bank():
    p = dict(COMPONENT_DEFAULTS["sgls"], start_epoch=1)
    refiner = build_refiner("sgls", p, setup())
    b = batch([2], index=[0])
    out = Outputs(logits=logits_for(ADV), x_adv=b.x, logits_adv=logits_for(ADV), logits_nat=logits_for(CLEAN))
    # T = 1, lam = 0.2: f~ = [0.3, 0.25, 0.45]; bank = 0.9 * onehot(2) + 0.1 * f~
    close(refiner.targets(b, out).label, [[0.03, 0.025, 0.945]])
    assert COMPONENT_DEFAULTS["sgls"]["init"] == "onehot" and COMPONENT_DEFAULTS["sgls"]["r"] == 1.0


# ---------------------------------------------------------------- ADR

P_T = [[0.6, 0.3, 0.1]]


def test_adr_teacher_right():
    # lam_i = 0.7 - (0.6 - 0.6) = 0.7; 0.7 * P_t + 0.3 * onehot(0)
    close(adr_targets(logits_for(P_T, 2.0), torch.tensor([0]), temperature=2.0, lam=0.7), [[0.72, 0.21, 0.07]])


def test_adr_teacher_wrong_shrinks_lambda():
    # y = 2, teacher argmax 0: lam_i = 0.7 - (0.6 - 0.1) = 0.2 -> 0.2 * P_t + 0.8 * onehot(2)
    close(adr_targets(logits_for(P_T, 2.0), torch.tensor([2]), temperature=2.0, lam=0.7), [[0.12, 0.06, 0.82]])


def test_adr_lambda_clipping():
    # lam_i = 0.3 - 0.5 < 0 -> clipped to 0: the one-hot label
    close(adr_targets(logits_for(P_T, 2.0), torch.tensor([2]), temperature=2.0, lam=0.3), [[0.0, 0.0, 1.0]])
    # lam_i = 1.2 - 0 > 1 -> clipped to 1: the teacher distribution
    close(adr_targets(logits_for(P_T, 2.0), torch.tensor([0]), temperature=2.0, lam=1.2), P_T)
    # the true class is never beaten: teacher wrong with a large lambda
    t = adr_targets(logits_for(P_T, 2.0), torch.tensor([1]), temperature=2.0, lam=0.95)
    # lam_i = 0.95 - 0.3 = 0.65: [0.39, 0.195 + 0.35, 0.065]
    close(t, [[0.39, 0.545, 0.065]])


def test_adr_cosine_schedule():
    assert cosine_schedule(2.5, 2.0, 0, 100) == 2.5
    assert cosine_schedule(2.5, 2.0, 50, 100) == pytest.approx(2.25)
    assert cosine_schedule(0.7, 0.95, 100, 100) == pytest.approx(0.95)
    assert cosine_schedule(0.7, 0.95, 25, 100) == pytest.approx(0.95 + 0.5 * (0.7 - 0.95) * (1 + math.cos(math.pi / 4)))


def test_adr_refiner_uses_ema_teacher_on_clean_input():
    model = nn.Sequential(nn.Linear(K, K, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(K))   # teacher(x) = x at the start
    refiner = build_refiner("adr", COMPONENT_DEFAULTS["adr"], setup(model=model))
    # iteration 0: tau = 2.5, lam = 0.7
    b = batch([2], x=logits_for(P_T, 2.5), iteration=0, total=10)
    t = refiner.before_attack(b)
    close(t.label, [[0.12, 0.06, 0.82]])
    assert refiner.targets(b, None) is t      # the same label for the attack and the loss
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    refiner.after_step(model)                 # teacher = 0.995 * I + 0.005 * 2I = 1.005 I
    torch.testing.assert_close(refiner.teacher.module[0].weight, 1.005 * torch.eye(K))


# ---------------------------------------------------------------- KD

def test_kd_target_loss(tmp_path):
    from soften.labels import kd_target

    T = 2.0
    teacher = logits_for([[0.5, 0.25, 0.25]], T)
    student = logits_for([[0.25, 0.25, 0.5]], T)   # softmax(z) = [1/6, 1/6, 2/3], softmax(z/T) = [.25, .25, .5]
    t = kd_target(torch.tensor([0]), [teacher], [0.6], T)
    assert t.label_weight == pytest.approx(0.4)
    expected = 0.4 * math.log(6) + 0.6 * T**2 * (0.5 * math.log(4) + 0.25 * math.log(4) + 0.25 * math.log(2))
    close(t.loss(student), expected, tol=1e-5)


def test_kd_refiner_loads_teachers_and_sees_adversarial_input(tmp_path):
    from soften.models import build_model
    from soften.models.checkpoint import model_checkpoint
    from soften.io import save_torch

    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=K, in_channels=1, mean=[0.5], std=[0.25]).eval()
    path = tmp_path / "best.pt"
    save_torch(model_checkpoint(teacher.state_dict(), spec={}, model_args={"arch": "cnn", "num_classes": K, "in_channels": 1},
                                epoch=1, metrics={}), path)
    refiner = build_refiner("kd-at", COMPONENT_DEFAULTS["kd-at"],
                            setup(teachers=[{"method": "pgd-at", "weight": 0.6, "checkpoint": str(path)}]))
    x_adv = torch.rand(2, 1, 8, 8)
    b = batch([0, 1], x=torch.zeros(2, 1, 8, 8))
    assert refiner.before_attack(b).is_hard    # the student's attack uses the hard label
    t = refiner.targets(b, Outputs(logits=torch.zeros(2, K), x_adv=x_adv, logits_adv=torch.zeros(2, K)))
    (w, probs, temp), = t.distill
    assert (w, temp) == (0.6, 2.0)
    with torch.no_grad():
        torch.testing.assert_close(probs, torch.softmax(teacher(x_adv) / 2.0, dim=1))
