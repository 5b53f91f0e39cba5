"""Every method trains for 2 epochs on a reduced digits set, its loss falls,
and a run interrupted after epoch 1 and resumed ends bit-identical to an
uninterrupted one (weights, label banks, EMA teachers, weight averages)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from soften.training.loop import train

from _methods_fixtures import ALL_METHODS, make_small_digits, run_spec, tiny_config

pytestmark = pytest.mark.slow


def _equal_nested(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"keys differ at {where}"
        for k in a:
            _equal_nested(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for i, (u, v) in enumerate(zip(a, b)):
            _equal_nested(u, v, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{a!r} != {b!r} at {where}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    make_small_digits(root / "resources")
    cfg = tiny_config(root / "results", root / "resources")
    return root, cfg


#: Two halves of similar cost, for `--dist loadgroup` where it groups (pytest < 9.2): two workers
#: then train them side by side, each half in order (the kd-* students after their teachers
#: standard and pgd-at, in half "a"). make test's --dist loadfile keeps the module on one worker.
HALF_B = {"pgd-at+sgls", "pgd-at+adr", "trades+adr", "pgd-at+awp", "pgd-at+adr+awp", "pgd-at+wa", "trades+adr+awp+wa"}


def _half(method):
    return pytest.mark.xdist_group("methods-b" if method in HALF_B else "methods-a")


@pytest.mark.parametrize("method", [pytest.param(m, marks=_half(m)) for m in ALL_METHODS])
def test_method_trains_and_resumes_exactly(world, method):
    root, cfg = world
    spec = run_spec(cfg, method)
    # the uninterrupted run lives where the teachers of kd-at / kd-swa look for it
    full = Path(cfg["results_dir"]) / "digits" / "none" / "cnn" / method / "seed0"
    for t in spec.get("teachers", []):
        assert Path(t["checkpoint"]).exists(), f"teacher {t['method']} must be trained first (ALL_METHODS order)"
    history = train(spec, full, progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"], history

    resumed = root / "resumed" / method
    partial = train(spec, resumed, stop_after_epoch=1, progress=False)
    assert len(partial) == 1 and not (resumed / "final.pt").exists()
    train(spec, resumed, progress=False)

    a = torch.load(full / "final.pt", weights_only=True)
    b = torch.load(resumed / "final.pt", weights_only=True)
    _equal_nested(a["model"], b["model"], "final.pt")
    last_a = torch.load(full / "last.pt", weights_only=True)
    last_b = torch.load(resumed / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "refiner", "extras", "rng"):
        _equal_nested(last_a[key], last_b[key], key)
    def comparable(row):  # NaN (no robust monitoring for standard training) equals NaN here
        return {k: "nan" if v != v else v for k, v in row.items() if k != "seconds"}

    for ra, rb in zip(last_a["history"], last_b["history"]):
        assert comparable(ra) == comparable(rb)


@_half("pgd-at+wa")
def test_weight_average_is_what_gets_saved(world):
    root, cfg = world
    run = Path(cfg["results_dir"]) / "digits" / "none" / "cnn" / "pgd-at+wa" / "seed0"
    if not (run / "final.pt").exists():
        train(run_spec(cfg, "pgd-at+wa"), run, progress=False)
    final = torch.load(run / "final.pt", weights_only=True)["model"]
    last = torch.load(run / "last.pt", weights_only=True)
    _equal_nested(final, last["extras"]["wa"]["model"], "wa")
    assert any(not torch.equal(final[k], last["model"][k]) for k in final)   # not the raw student


@_half("pgd-at+sglr")
def test_stateful_components_are_in_last_pt(world):
    root, cfg = world
    base = Path(cfg["results_dir"]) / "digits" / "none" / "cnn"
    for method, key in (("pgd-at+sglr", "bank"), ("pgd-at+te", "bank"), ("pgd-at+adr", "model")):
        run = base / method / "seed0"
        if not (run / "last.pt").exists():
            train(run_spec(cfg, method), run, progress=False)
        state = torch.load(run / "last.pt", weights_only=True)["refiner"]
        assert key in state
        if key == "bank":
            assert state["bank"].shape == (384, 10) and state["bank"].abs().sum() > 0
