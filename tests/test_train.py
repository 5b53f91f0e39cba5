import csv
import re
import math
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from soften.io import load_torch
from soften.training.loop import HISTORY_COLUMNS, NonFiniteLossError, train


from _methods_fixtures import assert_same_weights, weights  # noqa: E402


def test_history_checkpoints_and_best_selected_on_validation(tiny_spec, tmp_path):
    spec = tiny_spec()
    history = train(spec, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == HISTORY_COLUMNS
    assert float(rows[1]["lr"]) == pytest.approx(0.1) and float(rows[2]["lr"]) == pytest.approx(0.01)
    for name in ("last.pt", "best.pt", "final.pt"):
        torch.load(run / name, weights_only=True)  # loads without unpickling code
    best = load_torch(run / "best.pt")
    val = [h["val_robust_acc"] for h in history]
    assert best["epoch"] == 1 + val.index(max(val))
    assert best["spec"] == {**spec, "precision": "fp32"}  # the spec as run: CPU trains in fp32
    assert not list(run.glob(".*tmp"))  # atomic writes leave no temporaries


def test_monitoring_every_k_epochs_only_observes(tiny_spec, tmp_path):
    """Test/train curves every 2nd epoch and at the last; validation (best.pt) every epoch;
    the trained weights and the validation column are those of monitoring every epoch."""
    every = train(tiny_spec(epochs=5, lr_milestones=[3]), tmp_path / "every", progress=False)
    sparse = train(tiny_spec(epochs=5, lr_milestones=[3], monitor_every=2), tmp_path / "sparse", progress=False)
    monitored = [h["epoch"] for h in sparse if not math.isnan(h["test_robust_acc"])]
    assert monitored == [2, 4, 5]
    for h in sparse:
        curves = [h[k] for k in ("test_clean_acc", "test_robust_acc", "train_clean_acc", "train_robust_acc")]
        assert all(math.isnan(v) for v in curves) != (h["epoch"] in monitored)
    assert [h["val_robust_acc"] for h in sparse] == [h["val_robust_acc"] for h in every]
    for a, b in zip(every, sparse):
        if b["epoch"] in monitored:
            assert a["test_robust_acc"] == b["test_robust_acc"] and a["train_clean_acc"] == b["train_clean_acc"]
    for ckpt in ("best.pt", "final.pt"):
        assert_same_weights(weights(tmp_path / "every" / ckpt), weights(tmp_path / "sparse" / ckpt))
    assert "nan" in (tmp_path / "sparse" / "history.csv").read_text()


def test_resume_after_interruption_is_bit_identical(tiny_spec, tmp_path):
    spec = tiny_spec()
    train(spec, tmp_path / "straight", progress=False)
    partial = train(spec, tmp_path / "resumed", stop_after_epoch=1, progress=False)
    assert len(partial) == 1 and not (tmp_path / "resumed" / "final.pt").exists()
    history = train(spec, tmp_path / "resumed", progress=False)
    assert len(history) == 3
    assert_same_weights(weights(tmp_path / "straight" / "final.pt"), weights(tmp_path / "resumed" / "final.pt"))
    assert_same_weights(weights(tmp_path / "straight" / "best.pt"), weights(tmp_path / "resumed" / "best.pt"))
    straight = load_torch(tmp_path / "straight" / "last.pt")["history"]
    for a, b in zip(straight, history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_rerunning_a_finished_run_restores_deleted_outputs_without_training(tiny_spec, tmp_path):
    spec = tiny_spec()
    train(spec, tmp_path / "run", progress=False)
    expected = weights(tmp_path / "run" / "final.pt")
    for name in ("best.pt", "final.pt", "history.csv"):  # what Snakemake removes before a re-run
        (tmp_path / "run" / name).unlink()
    history = train(spec, tmp_path / "run", progress=False)
    assert len(history) == 3
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 4
    assert (tmp_path / "run" / "best.pt").exists()
    assert_same_weights(weights(tmp_path / "run" / "final.pt"), expected)


def test_a_run_moved_to_other_threads_still_resumes(tiny_spec, tmp_path):
    spec = tiny_spec()
    train(spec, tmp_path / "run", stop_after_epoch=2, progress=False)
    history = train(dict(spec, threads=2, device="auto"), tmp_path / "run", progress=False)
    first = load_torch(tmp_path / "run" / "last.pt")["history"][0]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0] == first


def test_resume_refreshes_a_best_checkpoint_older_than_last_pt(tiny_spec, tmp_path):
    spec = tiny_spec()
    train(spec, tmp_path / "run", progress=False)
    best = load_torch(tmp_path / "run" / "last.pt")["best"]
    stale = load_torch(tmp_path / "run" / "best.pt")
    stale["epoch"] = best["epoch"] + 7  # as if a kill had left another epoch's best.pt behind
    stale["model"] = {k: torch.zeros_like(v) for k, v in stale["model"].items()}
    torch.save(stale, tmp_path / "run" / "best.pt")
    train(spec, tmp_path / "run", progress=False)  # resumes past the last epoch: trains nothing
    refreshed = load_torch(tmp_path / "run" / "best.pt")
    assert refreshed["epoch"] == best["epoch"]
    assert_same_weights(refreshed["model"], best["model"])


def test_changed_settings_do_not_resume_from_a_stale_checkpoint(tiny_spec, tmp_path):
    train(tiny_spec(), tmp_path / "run", stop_after_epoch=1, progress=False)
    history = train(tiny_spec(lr=0.05), tmp_path / "run", progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_weights(tiny_spec, tmp_path, subprocess_env):
    # 8 epochs: killed once 2 are done, leaving ample time on a fast machine.
    spec = tiny_spec(epochs=8, lr_milestones=[6])
    train(spec, tmp_path / "straight", progress=False)
    cmd = [sys.executable, "-m", "soften", "train", "--spec", json.dumps(spec), "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = tmp_path / "killed" / "history.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "final.pt").exists()
    subprocess.run(cmd, env=subprocess_env, check=True, capture_output=True)
    assert_same_weights(weights(tmp_path / "straight" / "final.pt"), weights(tmp_path / "killed" / "final.pt"))


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_last_good_epoch(tiny_spec, tmp_path):
    spec = tiny_spec(epochs=3, lr_milestones=[3], nan_check_every=1)
    train(spec, tmp_path / "run", stop_after_epoch=1, progress=False)
    # Same run, but poison the data of epoch 2 by making the learning rate explode.
    state = load_torch(tmp_path / "run" / "last.pt")
    spec_bad = dict(spec, training=dict(spec["training"], lr=1e30))
    state["spec"] = spec_bad
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = 1e30
    torch.save(state, tmp_path / "run" / "last.pt")
    with pytest.raises(NonFiniteLossError, match="non-finite training loss in epoch 2"):
        train(spec_bad, tmp_path / "run", progress=False)
    assert load_torch(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "run" / "final.pt").exists()


def test_standard_training_needs_no_attack(tiny_spec, tmp_path):
    history = train(tiny_spec("standard", epochs=3, lr_milestones=[5]), tmp_path / "run", progress=False)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[2]["val_clean_acc"] > 0.3  # chance is 0.1


def test_the_train_stage_writes_final_pt_once_and_no_timings(tiny_spec, tmp_path, monkeypatch, caplog):
    """Outputs are a function of inputs, params and code (a rerun writes the same bytes), and
    each is written once: the per-epoch wall clock goes to the log, not into history.csv or
    final.pt, so nothing has to load and re-save them."""
    import logging

    from soften import io as soften_io
    from soften.pipeline import stages
    from soften.training import loop

    saved = []
    real_save_torch = soften_io.save_torch

    def counting_save_torch(obj, path):
        saved.append(Path(path).name)
        return real_save_torch(obj, path)

    monkeypatch.setattr(loop, "save_torch", counting_save_torch)
    monkeypatch.setattr(soften_io, "save_torch", counting_save_torch)
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="soften.train"):
        stages.train(tiny_spec(), run, keep_resume_state=True)
    assert saved.count("final.pt") == 1
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "epoch" and "seconds" not in header and len(header) == 11
    assert "seconds" not in load_torch(run / "final.pt")["metrics"]
    # the times are in the log, one per epoch: "epoch 2: loss ... (0.4s)"
    assert sum(bool(re.search(r"^epoch \d+: .*\(\d+\.\ds\)$", r.getMessage())) for r in caplog.records) == 3
