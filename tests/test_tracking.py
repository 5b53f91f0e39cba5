"""tracking: tensorboard writes each epoch's metrics as TensorBoard events, read back here
with TensorBoard's own reader and checked against history.csv; a resumed run shows
every epoch once; off by default."""

import csv
import math

import pytest

from soften.training.loop import train
from soften.training.tracking import tag

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator


def events(run):
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def history(run):
    return list(csv.DictReader((run / "history.csv").open()))


def expected(rows):
    """tag -> [(epoch, value)] from history.csv (non-finite values are not logged)."""
    out = {}
    for row in rows:
        for column, text in row.items():
            if column != "epoch" and math.isfinite(float(text)):
                out.setdefault(tag(column), []).append((int(row["epoch"]), float(text)))
    return out


def same(got, want):
    # The epoch's wall-clock time is tracked too, though history.csv leaves timings to the log.
    assert set(got) == set(want) | {tag("seconds")}
    assert [s for s, _ in got[tag("seconds")]] == [s for s, _ in want["lr"]]
    assert all(v > 0 for _, v in got[tag("seconds")])
    for t in want:
        assert [s for s, _ in got[t]] == [s for s, _ in want[t]], t
        assert [v for _, v in got[t]] == pytest.approx([v for _, v in want[t]], rel=1e-6), t  # float32 events


def test_tensorboard_events_hold_each_epochs_metrics(tiny_spec, tmp_path):
    run = tmp_path / "run"
    train({**tiny_spec("pgd-at"), "tracking": "tensorboard"}, run)
    got = events(run)
    assert {"accuracy/val_robust", "accuracy/test_clean", "loss/train", "lr", "grad_norm"} <= set(got)
    assert [s for s, _ in got["accuracy/val_robust"]] == [1, 2, 3]
    same(got, expected(history(run)))


def test_resumed_run_logs_every_epoch_once(tiny_spec, tmp_path):
    run = tmp_path / "run"
    spec = {**tiny_spec("pgd-at"), "tracking": "tensorboard"}
    train(spec, run, stop_after_epoch=2)
    train(spec, run)  # resumes at epoch 3 from last.pt
    same(events(run), expected(history(run)))


def test_tracking_is_off_by_default(tiny_spec, tmp_path):
    run = tmp_path / "run"
    train(tiny_spec("standard", epochs=1), run)
    assert (run / "history.csv").exists() and not (run / "tensorboard").exists()
