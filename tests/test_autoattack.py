"""The AutoAttack adapter against the installed package called directly."""

from __future__ import annotations

import importlib

import pytest
import torch

from _eval_fixtures import one_thread, tiny_cnn, tiny_linear_model  # noqa: F401 (autouse)
from soften.evaluation import autoattack
from soften.evaluation.autoattack import backend

pytest.importorskip("pyautoattack")

# Shorter budgets for a fast test; the same attack code paths run.
FAST = {"apgd.n_iter": 10, "apgd_targeted.n_iter": 10, "fab.n_iter": 10, "square.n_queries": 100}


def direct(model, x, y, eps, seed=0, settings=None, batch_size=500):
    """The package's own API, no adapter: one run_standard_evaluation call."""
    from pyautoattack import AutoAttack

    model.eval()
    aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device="cpu")
    for key, value in (settings or {}).items():
        obj, attr = key.split(".")
        setattr(getattr(aa, obj), attr, value)
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return y_adv == y


def inputs(n, seed=1, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


def test_standard_version_equals_direct_package_call():
    model = tiny_linear_model()
    x = inputs(16)
    y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two clean mistakes
    expected = direct(model, x, y, eps=8 / 255)
    res = autoattack(model, x, y, eps=8 / 255, seed=0)
    assert res["robust_accuracy"] == int(expected.sum()) / len(expected)
    assert torch.equal(res["robust_mask"], expected)
    assert res["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert res["counts"]["clean"] == 14
    counts = [res["counts"][k] for k in ["clean", *res["attacks"]]]
    assert counts == sorted(counts, reverse=True) and counts[-1] == int(expected.sum())


def test_all_four_attacks_run_and_match_direct_call_with_bn_model():
    model = tiny_cnn(channels=3)
    model.train()  # the adapter must attack in eval mode and restore train mode
    x = inputs(24, seed=2)
    with torch.no_grad():
        model.eval()
        y = model(x).argmax(1)
        model.train()
    bn = model[1]
    running = bn.running_mean.clone()
    rng_before = torch.get_rng_state()
    eps = 0.5 / 255  # small: most points survive APGD-CE, so every attack runs
    res = autoattack(model, x, y, eps=eps, seed=3, settings=FAST, batch_size=10)
    assert model.training and torch.equal(bn.running_mean, running)
    assert torch.equal(torch.get_rng_state(), rng_before)
    expected = direct(model, x, y, eps=eps, seed=3, settings=FAST, batch_size=10)
    assert torch.equal(res["robust_mask"], expected)
    assert res["robust_accuracy"] == int(expected.sum()) / len(expected)
    assert res["counts"]["square"] == int(expected.sum()) and res["counts"]["clean"] == 24
    assert res["settings"] == FAST and res["package"].startswith(backend()[0])


def test_n_examples_and_attack_subset():
    model = tiny_linear_model()
    x = inputs(20, seed=4)
    y = model(x).argmax(1)
    res = autoattack(model, x, y, eps=1 / 255, n_examples=8, attacks=["square"], settings=FAST, return_adv=True)
    assert res["n"] == 8 and res["attacks"] == ["square"] and len(res["robust_mask"]) == 8
    delta = (res["x_adv"] - x[:8]).abs().max().item()
    assert delta <= 1 / 255 + 1e-6 and res["x_adv"].min() >= 0 and res["x_adv"].max() <= 1
    with torch.no_grad():
        assert torch.equal(model(res["x_adv"]).argmax(1) == y[:8], res["robust_mask"])
    with pytest.raises(ValueError, match="not part of AutoAttack"):
        autoattack(model, x, y, eps=1 / 255, attacks=["fgsm"])
    with pytest.raises(ValueError, match="fp32"):
        autoattack(tiny_linear_model().to(torch.bfloat16), x, y, eps=1 / 255)


class _GitHubStyleAutoAttack:
    """The GitHub ``autoattack`` wrapper API (positional norm/eps, verbose,
    ``bs=``, ``return_labels=``) around the installed attack code, to check that
    the adapter drives that API the way it documents."""

    def __init__(self, model, norm="Linf", eps=0.3, seed=None, verbose=True, attacks_to_run=[], version="standard",
                 is_tf_model=False, device="cuda", log_path=None):
        from pyautoattack import AutoAttack

        object.__setattr__(self, "_inner", AutoAttack(model, norm=norm, eps=eps, seed=seed, version=version, device=device))
        object.__setattr__(self, "calls", [])

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)

    def run_standard_evaluation(self, x_orig, y_orig, bs=250, return_labels=False):
        self.calls.append(bs)
        x_adv, y_adv = self._inner.run_standard_evaluation(x_orig, y_orig, batch_size=bs)
        return (x_adv, y_adv) if return_labels else x_adv


def test_github_autoattack_api_is_supported(monkeypatch):
    import types

    fake = types.ModuleType("autoattack")
    fake.AutoAttack = _GitHubStyleAutoAttack
    monkeypatch.setitem(__import__("sys").modules, "autoattack", fake)
    model = tiny_linear_model()
    x = inputs(16, seed=5)
    y = model(x).argmax(1)
    res = autoattack(model, x, y, eps=1 / 255, settings=FAST, package="autoattack", batch_size=8)
    expected = direct(model, x, y, eps=1 / 255, settings=FAST, batch_size=8)
    assert torch.equal(res["robust_mask"], expected)
    assert res["package"].startswith("autoattack==")


class Killed(Exception):
    """Stands for the SLURM time limit: the process ends inside an attack."""


def test_a_killed_autoattack_resumes_after_its_last_finished_attack(tmp_path, monkeypatch):
    adapter = importlib.import_module("soften.evaluation.autoattack")  # the package exports a function of that name

    model = tiny_linear_model()
    x = inputs(16)
    y = model(x).argmax(1)
    full = autoattack(model, x, y, eps=2 / 255, seed=0, settings=FAST)
    assert full["counts"]["apgd-ce"] > 0  # points left for the later attacks, so they run
    state = tmp_path / "aa.json.aa-state.pt"
    real, calls = adapter.run_package, []

    def killed_in_second(aa, name, *args):
        calls.append(list(aa.attacks_to_run))
        if len(calls) == 2:
            raise Killed
        return real(aa, name, *args)

    monkeypatch.setattr(adapter, "run_package", killed_in_second)
    with pytest.raises(Killed):
        autoattack(model, x, y, eps=2 / 255, seed=0, settings=FAST, state_path=state)
    assert state.exists()
    calls.clear()
    monkeypatch.setattr(adapter, "run_package", lambda aa, name, *args: (calls.append(list(aa.attacks_to_run)),
                                                                          real(aa, name, *args))[1])
    resumed = autoattack(model, x, y, eps=2 / 255, seed=0, settings=FAST, state_path=state)
    assert calls == [["apgd-t"], ["fab-t"], ["square"]]  # APGD-CE is not run again
    assert resumed["resumed_after"] == ["apgd-ce"] and full["resumed_after"] == []
    assert torch.equal(resumed["robust_mask"], full["robust_mask"]) and resumed["counts"] == full["counts"]
    assert not state.exists()  # removed once the evaluation is complete


def test_a_saved_state_of_another_evaluation_is_not_resumed(tmp_path, monkeypatch):
    adapter = importlib.import_module("soften.evaluation.autoattack")  # the package exports a function of that name

    model = tiny_linear_model()
    x = inputs(8)
    y = model(x).argmax(1)
    state = tmp_path / "state.pt"
    real = adapter.run_package

    def killed(aa, name, *args):
        raise Killed

    monkeypatch.setattr(adapter, "run_package", killed)
    with pytest.raises(Killed):
        autoattack(model, x, y, eps=2 / 255, seed=0, settings=FAST, state_path=state)
    monkeypatch.setattr(adapter, "run_package", real)
    assert not state.exists()  # nothing finished before the kill: nothing saved
    adapter._save_state(state, "another evaluation", ["apgd-ce"], torch.ones(8, dtype=torch.bool),
                        torch.ones(8, dtype=torch.bool), None, {"clean": 8, "apgd-ce": 8}, {"apgd-ce": 0.0})
    res = autoattack(model, x, y, eps=4 / 255, seed=0, settings=FAST, state_path=state)
    assert res["resumed_after"] == [] and res["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
