"""``training.select_on: [validation, test]``: best_test.pt is the epoch the authors' code
would pick, the argmax of a per-epoch accuracy curve on the whole test set."""

from __future__ import annotations

import csv

import torch

from _methods_fixtures import assert_same_weights, weights
from soften.data import load_dataset_npz
from soften.io import load_torch
from soften.models.checkpoint import load_model
from soften.training.loop import train


def whole_test_split(spec):
    arrays = load_dataset_npz(spec["dataset_npz"])
    x = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).float() / 255
    return x, torch.from_numpy(arrays["y_test"]).long()


def test_best_test_is_the_argmax_of_a_test_curve_built_here(tiny_spec, tmp_path):
    """Standard training selects on clean accuracy (deterministic): after every epoch this test
    measures the trained model on the whole test split itself, and best_test.pt must be the first
    epoch of the highest value, with that epoch's weights (the comparison is strict in both authors'
    codes: the first of tied epochs)."""
    spec = tiny_spec("standard", epochs=5, lr=1.0, lr_milestones=[5], select_on=["validation", "test"],
                     test_subset=16)
    run = tmp_path / "run"
    x, y = whole_test_split(spec)
    curve, states = [], []
    for epoch in range(1, 6):
        train(spec, run, stop_after_epoch=epoch, progress=False)
        model, _ = load_model(run / "best.pt")
        state = load_torch(run / "last.pt")["model"] if epoch < 5 else load_torch(run / "final.pt")["model"]
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            curve.append((model(x).argmax(1) == y).float().mean().item())
        states.append(state)
    chosen = load_torch(run / "best_test.pt")
    first_max = curve.index(max(curve)) + 1
    # lr 1.0 makes the curve peak early (here at epoch 2), so "the last epoch" would fail this test.
    assert first_max < 5
    assert chosen["epoch"] == first_max
    assert_same_weights(chosen["model"], states[first_max - 1])
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [float(r["select_test_clean_acc"]) for r in rows] == curve


def test_selection_only_observes_and_reuses_a_whole_test_curve(tiny_spec, tmp_path):
    """With PGD selection: training, best.pt and final.pt are those of a run without it; when the
    monitored test curve already is the whole test set every epoch, best_test.pt is its argmax
    and costs nothing extra."""
    plain = train(tiny_spec(test_subset=16), tmp_path / "plain", progress=False)
    measured = train(tiny_spec(test_subset=16, select_on=["validation", "test"]), tmp_path / "measured",
                     progress=False)
    for ckpt in ("best.pt", "final.pt"):
        assert_same_weights(weights(tmp_path / "plain" / ckpt), weights(tmp_path / "measured" / ckpt))
    assert [h["val_robust_acc"] for h in plain] == [h["val_robust_acc"] for h in measured]
    assert "select_test_robust_acc" not in plain[0]
    assert not (tmp_path / "plain" / "best_test.pt").exists()
    assert all(h["select_test_seconds"] > 0 for h in measured)

    whole = train(tiny_spec(test_subset=None, select_on=["validation", "test"]), tmp_path / "whole", progress=False)
    robust = [h["test_robust_acc"] for h in whole]
    assert [h["select_test_robust_acc"] for h in whole] == robust
    assert all(h["select_test_seconds"] == 0 for h in whole)
    assert load_torch(tmp_path / "whole" / "best_test.pt")["epoch"] == robust.index(max(robust)) + 1
