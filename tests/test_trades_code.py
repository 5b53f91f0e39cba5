"""``trades.code``: each variant against a transcription of the code it names.

The references below are the authors' code, copied with only ``.cuda()`` dropped and
``size_average=False`` written ``reduction="sum"``; they share nothing with soften's
code path. A few SGD steps of soften's ``train_step`` and of the transcription, from
the same weights and the same RNG state, must leave the same losses and the same
BatchNorm running statistics (mean, var, num_batches_tracked).
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from soften.labels import Batch, Setup, build_refiner
from soften.training.extras import build_extra
from soften.training.loop import train_step
from soften.training.methods import method_params
from soften.training.objectives import build_objective

THREAT = {"eps": 0.1, "alpha": 0.025, "steps": 4}
BETA = 6.0
STEPS = 3


# The attack both transcriptions below share, line for line: in eval mode, KL to the
# natural prediction, from a 0.001-Gaussian start.
def trades_attack_eval_mode(model, x_natural, step_size, epsilon, perturb_steps):
    criterion_kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x_natural.detach() + 0.001 * torch.randn(x_natural.shape).detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x_natural), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    return x_adv


# ---- yaodongyu/TRADES (6e8e11b), trades.py::trades_loss, distance='l_inf'
def official_trades_loss(model, x_natural, y, optimizer, step_size=0.003, epsilon=0.031, perturb_steps=10, beta=1.0):
    criterion_kl = nn.KLDivLoss(reduction="sum")
    batch_size = len(x_natural)
    x_adv = trades_attack_eval_mode(model, x_natural, step_size, epsilon, perturb_steps)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    optimizer.zero_grad()
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(model(x_adv), dim=1),
                                                    F.softmax(model(x_natural), dim=1))
    return loss_natural + beta * loss_robust


def official_step(model, x, y, optimizer):
    """train_trades_cifar10.py::train, one batch."""
    model.train()
    optimizer.zero_grad()
    loss = official_trades_loss(model, x, y, optimizer, step_size=THREAT["alpha"], epsilon=THREAT["eps"],
                                perturb_steps=THREAT["steps"], beta=BETA)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---- devicerxx/SGLS (3e96990), losses/__pycache__/trades.cpython-38.pyc, class TRADES.__call__
# (disassembled; the same as LayneH/self-adaptive-training losses/trades.py TRADES.__call__)
def sgls_trades(x_natural, y, model, optimizer, step_size, epsilon, perturb_steps, beta):
    criterion_kl = nn.KLDivLoss(reduction="sum")
    batch_size = len(x_natural)
    x_adv = trades_attack_eval_mode(model, x_natural, step_size, epsilon, perturb_steps)
    optimizer.zero_grad()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1))
    return logits, loss_natural + beta * loss_robust


def sgls_step(model, x, y, optimizer):
    """main_adv.py::train, one batch."""
    model.train()
    optimizer.zero_grad()
    _, loss = sgls_trades(x, y, model, optimizer, THREAT["alpha"], THREAT["eps"], THREAT["steps"], BETA)
    loss.backward(retain_graph=True)
    optimizer.step()
    return loss.detach()


# ---- yuyuwu5/ADR (515da0e), src/util/trades_attack.py::TRADES.attack and
# src/advTrainer.py::AdvTrainer._train_one_epoch (adv_train_mode "TRADES", SGD, no ADR)
def adr_trades_attack(model, x_natural, epsilon, step_size, perturb_steps):
    criterion_kl = nn.KLDivLoss(reduction="batchmean", log_target=True)
    x_adv = x_natural.clone().detach() + 0.001 * torch.rand_like(x_natural).detach()
    with torch.no_grad():
        natural_predict = model(x_natural)
        natural_prob = F.log_softmax(natural_predict, dim=1)
        natural_prob = natural_prob.detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad = True
        loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), natural_prob)
        grad = torch.autograd.grad(loss_kl, x_adv, retain_graph=False, create_graph=False)[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    return x_adv


def adr_step(model, img, label, optimizer):
    cls_loss_fn = torch.nn.CrossEntropyLoss()
    kl_loss_fn = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)
    model.train()  # set once per epoch there; the attack runs in it
    img_adv = adr_trades_attack(model, img, THREAT["eps"], THREAT["alpha"], THREAT["steps"])
    model.train()
    optimizer.zero_grad()
    logits = model(torch.cat([img, img_adv]))
    logits_natural = logits[: img.shape[0]]
    logits_adv = logits[img.shape[0]:]
    loss_natural = cls_loss_fn(logits_natural, label)
    loss_robust = kl_loss_fn(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_natural, dim=1))
    loss = loss_natural + BETA * loss_robust
    loss.backward()
    optimizer.step()
    return loss.detach()


REFERENCES = {"official": official_step, "sgls": sgls_step, "adr": adr_step}
#: Train-mode forwards per step: official f(x), f(x'), f(x); SGLS f(x), f(x');
#: ADR the attack's f(x) and its iterates, then cat([x, x']).
FORWARDS_PER_STEP = {"official": 3, "sgls": 2, "adr": 1 + THREAT["steps"] + 1}


def small_bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, 3), nn.BatchNorm1d(3))


def batches():
    gen = torch.Generator().manual_seed(5)
    return [(torch.rand(8, 1, 4, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)) for _ in range(STEPS)]


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


@functools.cache  # deterministic; the tests only read the result
def run_reference(code):
    model = small_bn_net()
    optimizer = sgd(model)
    torch.manual_seed(11)
    losses = [REFERENCES[code](model, x, y, optimizer) for x, y in batches()]
    return model, torch.stack(losses)


@functools.cache
def run_soften(code, attack_train_mode=True, method="trades"):
    model = small_bn_net().train()
    optimizer = sgd(model)
    params = method_params(method, {"trades": {"code": code}})
    objective = build_objective("trades", params["trades"], THREAT, attack_train_mode)
    extras = [build_extra(name, params[name], model) for name in params if name == "awp"]
    setup = Setup(num_samples=8 * STEPS, num_classes=3, model=model, device=torch.device("cpu"))
    refiner = build_refiner("hard", {}, setup)
    torch.manual_seed(11)
    losses = []
    for step, (x, y) in enumerate(batches()):
        batch = Batch(model=model, index=torch.arange(8) + 8 * step, x=x, y=y, epoch=1, iteration=step,
                      total_iterations=STEPS)
        loss, _, _ = train_step(batch, objective=objective, refiner=refiner, extras=extras, optimizer=optimizer,
                                autocast=contextlib.nullcontext())
        losses.append(loss)
    return model, torch.stack(losses)


def bn_buffers(model):
    return {name: buf for name, buf in model.named_buffers()}


def same_bn(a, b) -> bool:
    ba, bb = bn_buffers(a), bn_buffers(b)
    return ba.keys() == bb.keys() and all(
        torch.equal(ba[k], bb[k]) if "num_batches" in k else torch.allclose(ba[k], bb[k], rtol=1e-4, atol=1e-6)
        for k in ba)


@pytest.mark.parametrize("code", sorted(REFERENCES))
def test_bn_statistics_and_losses_match_the_authors_code(code):
    ours, our_losses = run_soften(code)
    ref, ref_losses = run_reference(code)
    assert torch.allclose(our_losses, ref_losses, rtol=1e-5, atol=1e-6), (our_losses, ref_losses)
    assert same_bn(ours, ref)
    assert all(int(buf) == STEPS * FORWARDS_PER_STEP[code] for k, buf in bn_buffers(ours).items() if "num_batches" in k)
    # the comparison can tell the variants apart: every other code's statistics differ
    for other in sorted(set(REFERENCES) - {code}):
        assert not same_bn(run_soften(other)[0], ref), other


def test_soften_code_with_an_eval_mode_attack_is_the_sgls_code():
    ours, our_losses = run_soften("soften", attack_train_mode=False)
    ref, ref_losses = run_reference("sgls")
    assert torch.allclose(our_losses, ref_losses, rtol=1e-5, atol=1e-6)
    assert same_bn(ours, ref)


def test_soften_code_with_a_train_mode_attack_is_none_of_them():
    ours, _ = run_soften("soften", attack_train_mode=True)
    assert not any(same_bn(ours, run_reference(code)[0]) for code in REFERENCES)


def test_awp_ascent_adds_no_bn_update_to_the_adr_code():
    # soften's AWP (Wu et al.'s proxy) keeps its ascent forward out of the statistics, so
    # trades+awp under code adr counts ADR's TRADES forwards only; ADR's own AWP would
    # count one more per step (docs/methods.md, "Composites").
    plain, _ = run_soften("adr")
    with_awp, _ = run_soften("adr", method="trades+awp")
    counts = [int(b) for k, b in bn_buffers(with_awp).items() if "num_batches" in k]
    assert counts == [STEPS * FORWARDS_PER_STEP["adr"]] * 2
    assert not same_bn(with_awp, plain)  # the recorded forward is at the perturbed weights


def first_layer_bn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 3)).train()


def test_official_running_mean_by_hand():
    # BN on the inputs, fresh statistics (mean 0, var 1), momentum 0.1; training forwards
    # f(x), f(x'), f(x): r = 0.9 (0.9 * 0.1 m_x + 0.1 m_x') + 0.1 m_x = 0.181 m_x + 0.09 m_x'
    model = first_layer_bn()
    objective = build_objective("trades", {"beta": BETA, "code": "official"}, THREAT, attack_train_mode=True)
    x = torch.rand(6, 1, 2, 2)
    x_adv = objective.craft(model, x, None)  # eval mode: leaves the statistics alone
    bn = model[1]
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(4))
    objective.forward(model, x, x_adv)
    m_x, m_adv = x.flatten(1).mean(0), x_adv.flatten(1).mean(0)
    assert torch.allclose(bn.running_mean, 0.181 * m_x + 0.09 * m_adv, atol=1e-6)
    assert int(bn.num_batches_tracked) == 3


def test_adr_one_forward_shares_batch_statistics_by_hand():
    model = first_layer_bn()
    objective = build_objective("trades", {"beta": BETA, "code": "adr"}, THREAT, attack_train_mode=False)
    x = torch.rand(6, 1, 2, 2)
    x_adv = (x + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    out = objective.forward(model, x, x_adv)
    both = torch.cat([x, x_adv]).flatten(1)
    bn = model[1]
    assert torch.allclose(bn.running_mean, 0.1 * both.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * both.var(0, unbiased=True), atol=1e-6)
    assert int(bn.num_batches_tracked) == 1
    # the clean logits are normalised by the 12-sample statistics, not x's own
    z = (x.flatten(1) - both.mean(0)) / torch.sqrt(both.var(0, unbiased=False) + bn.eps)
    assert torch.allclose(out.logits_nat, model[2](z), atol=1e-5)
    separate = build_objective("trades", {"beta": BETA, "code": "official"}, THREAT, attack_train_mode=False)
    assert not torch.allclose(separate.forward(model, x, x_adv).logits_nat, out.logits_nat, atol=1e-3)


def test_unknown_code_is_rejected():
    with pytest.raises(ValueError, match="trades.code"):
        method_params("trades+sglr", {"trades": {"code": "yaodongyu"}})
