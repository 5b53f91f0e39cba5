"""Faults during training: divergence, a corrupt or non-finite last.pt, temporaries
a killed save left, a second train process on the same folder, a full disk. In
each case nothing non-finite or half-written is kept, the last good state is, and
the user is told what happened in one line naming the file or tensor."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

from soften.errors import BusyError, DivergedError
from soften.io import load_torch
from soften.models.checkpoint import first_non_finite
from soften.training.loop import LOCK_NAME, NonFiniteStateError, train

REPO = Path(__file__).resolve().parents[1]


from _methods_fixtures import assert_same_weights, weights  # noqa: E402


def assert_message_is_true(err: Exception, run: Path):
    """What the message says last.pt holds is what it holds, and that state is finite."""
    held = re.search(r"last\.pt still holds epoch (\d+)", str(err))
    if held:
        state = load_torch(run / "last.pt")
        assert state["epoch"] == int(held.group(1))
        assert first_non_finite({k: state[k] for k in ("model", "optimizer", "refiner", "extras")}) is None
    else:
        assert "no epoch of this run has been saved" in str(err)
        assert not (run / "last.pt").exists()


# ---------------------------------------------------------------- divergence

def test_lr_1e3_diverges_in_epoch_1_and_saves_nothing(tiny_spec, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(DivergedError) as err:
        train(tiny_spec(lr=1e3), run, progress=False)
    assert "epoch 1" in str(err.value) and "Lower the learning rate" in str(err.value)
    assert_message_is_true(err.value, run)
    assert not any((run / name).exists() for name in ("last.pt", "best.pt", "final.pt", "history.csv"))


def test_lr_200_diverges_later_and_keeps_the_last_good_epoch(tiny_spec, tmp_path):
    # The case: the loss stays finite while BatchNorm's running variance overflows.
    run = tmp_path / "run"
    spec = tiny_spec(lr=200, nan_check_every=1)
    with pytest.raises(NonFiniteStateError) as err:
        train(spec, run, progress=False)
    message = str(err.value)
    assert re.search(r"after epoch 2 of run .*, model/net\.features\.\d+\.running_var in last\.pt holds non-finite",
                     message), message
    assert "last.pt still holds epoch 1" in message
    assert_message_is_true(err.value, run)
    assert load_torch(run / "best.pt")["epoch"] == 1 and first_non_finite(weights(run / "best.pt")) is None
    assert not (run / "final.pt").exists()
    assert (run / "history.csv").read_text().count("\n") == 2    # header + epoch 1
    # Re-running the same command resumes from epoch 1 and stops the same way: never a final.pt.
    with pytest.raises(NonFiniteStateError, match="after epoch 2"):
        train(spec, run, progress=False)
    assert load_torch(run / "last.pt")["epoch"] == 1 and not (run / "final.pt").exists()


def test_the_loss_check_says_what_last_pt_holds(tiny_spec, tmp_path):
    run = tmp_path / "run"
    spec = tiny_spec(epochs=3, lr_milestones=[3], nan_check_every=1)
    train(spec, run, stop_after_epoch=2, progress=False)
    state = load_torch(run / "last.pt")
    bad = dict(spec, training=dict(spec["training"], lr=1e30))   # the loss explodes in epoch 3
    state["spec"] = bad
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = 1e30
    torch.save(state, run / "last.pt")
    with pytest.raises(DivergedError) as err:
        train(bad, run, progress=False)
    assert "epoch 3" in str(err.value) and "last.pt still holds epoch 2" in str(err.value)
    assert_message_is_true(err.value, run)


# ---------------------------------------------------------------- last.pt damaged

@pytest.mark.parametrize("damage,problem", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "is truncated or corrupt"),
    (lambda p: p.write_bytes(b""), "is truncated or corrupt (empty)"),
    (lambda p: torch.save({"model": {"w": torch.tensor([float("nan")])}, **{k: {} for k in (
        "optimizer", "scheduler", "refiner", "extras", "rng")}, "epoch": 2, "history": [], "best": {}, "spec": {}}, p),
     "holds non-finite values (NaN or inf) in model/w"),
])
def test_a_damaged_last_pt_is_set_aside_and_the_run_restarts(tiny_spec, tmp_path, caplog, damage, problem):
    spec = tiny_spec(epochs=2, lr_milestones=[5])
    train(spec, tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    train(spec, run, stop_after_epoch=1, progress=False)
    damage(run / "last.pt")
    bad_bytes = (run / "last.pt").read_bytes()
    history = train(spec, run, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert f"last.pt {problem}" in caplog.text and "set aside as last.corrupt.pt" in caplog.text
    assert (run / "last.corrupt.pt").read_bytes() == bad_bytes          # kept for inspection, not lost
    assert_same_weights(weights(tmp_path / "straight" / "final.pt"), weights(run / "final.pt"))


def test_a_second_corrupt_last_pt_does_not_overwrite_the_first(tiny_spec, tmp_path):
    spec = tiny_spec(epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    for content in (b"first", b"second"):
        (run / "last.pt").write_bytes(content)
        train(spec, run, progress=False)
        (run / "final.pt").unlink()
    assert (run / "last.corrupt.pt").read_bytes() == b"first"
    assert (run / "last.corrupt-1.pt").read_bytes() == b"second"


# ---------------------------------------------------------------- the run folder

def test_temporaries_a_killed_save_left_are_removed_on_start(tiny_spec, tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    orphans = [run / ".last.pt.k3j2_x9a.tmp", run / ".best.pt.0a1b2c3d.tmp", run / ".history.csv.zz9.tmp"]
    for p in orphans:
        p.write_bytes(b"half a checkpoint")
    (run / "notes.txt").write_text("mine")   # not soften's: left alone
    train(tiny_spec(epochs=1), run, progress=False)
    assert not any(p.exists() for p in orphans)
    assert (run / "notes.txt").read_text() == "mine"
    assert "removed 3 temporary file(s)" in caplog.text
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_second_train_process_on_the_same_folder_stops_at_once(tiny_spec, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # Another process's lock: flock conflicts between separate opens, as between processes.
    fd = os.open(run / LOCK_NAME, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    try:
        with pytest.raises(BusyError, match=r"run is being trained by another process \(pid 4242\); wait for it"):
            train(tiny_spec(epochs=1), run, progress=False)
        from soften.__main__ import main

        code = main(["train", "--spec", json.dumps(tiny_spec(epochs=1)), "--out", str(run)])
        assert code == 2 and "is being trained by another process" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]   # nothing written
    finally:
        os.close(fd)
    train(tiny_spec(epochs=1), run, progress=False)   # the lock released, it runs
    assert (run / "final.pt").exists()


# ---------------------------------------------------------------- a full disk

# Inside a private mount namespace: a run trained for one epoch is copied onto a small
# tmpfs, which is then filled; resuming must fail naming the file, leaving last.pt intact.
DISK_FULL = textwrap.dedent("""
    import json, os, shutil, subprocess, sys
    from pathlib import Path
    src, mount, spec_path = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    run = mount / "run"
    shutil.copytree(src, run)
    before = (run / "last.pt").read_bytes()
    free = shutil.disk_usage(mount).free
    with open(mount / "filler", "wb") as fh:   # leave 8 KiB: less than any checkpoint
        fh.write(b"x" * max(0, free - 8192))
    proc = subprocess.run([sys.executable, "-m", "soften", "train", "--spec", open(spec_path).read(),
                           "--out", str(run)], capture_output=True, text=True)
    print(json.dumps({"rc": proc.returncode, "stderr": proc.stderr,
                      "last_unchanged": (run / "last.pt").read_bytes() == before,
                      "files": sorted(p.name for p in run.iterdir())}))
""")


def _unshare_works():
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=64k tmpfs \"$TMPDIR\""], capture_output=True,
                           env=dict(os.environ, TMPDIR=tempfile.gettempdir()))
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="needs a private mount namespace (unshare -rm) to fake a full disk")
def test_a_full_disk_names_the_file_and_keeps_last_pt(tiny_spec, tmp_path, subprocess_env):
    spec = tiny_spec(epochs=2, lr_milestones=[5])
    train(spec, tmp_path / "run", stop_after_epoch=1, progress=False)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "script.py").write_text(DISK_FULL)
    mount = tmp_path / "mnt"
    mount.mkdir()
    size = sum(p.stat().st_size for p in (tmp_path / "run").iterdir()) + 64 * 1024
    inner = (f"mount -t tmpfs -o size={size} tmpfs {mount} && "
             f"{sys.executable} {tmp_path / 'script.py'} {tmp_path / 'run'} {mount} {tmp_path / 'spec.json'}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", inner], env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [l for l in result["stderr"].splitlines() if "error:" in l]
    assert result["rc"] == 2 and "Traceback" not in result["stderr"], result["stderr"]
    assert len(errors) == 1
    print(errors[0])  # shown with pytest -s
    assert re.search(r"soften train: error: could not write \S+/run/(best|last)\.pt: no space left on device", errors[0])
    assert "is unchanged" in errors[0]
    assert result["last_unchanged"]
    assert not [f for f in result["files"] if f.endswith(".tmp")], result["files"]


def test_a_last_pt_that_does_not_fit_the_run_is_named_not_half_restored(tiny_spec, tmp_path):
    # Same settings, but the state comes from another soften version (a renamed tensor).
    from soften.errors import CorruptFileError

    spec = tiny_spec(epochs=2)
    run = tmp_path / "run"
    train(spec, run, stop_after_epoch=1, progress=False)
    state = load_torch(run / "last.pt")
    state["model"] = {k.replace("net.", "body."): v for k, v in state["model"].items()}
    torch.save(state, run / "last.pt")
    with pytest.raises(CorruptFileError, match=r"last\.pt cannot be restored into this run \(RuntimeError: Error\(s\) "
                                               r"in loading state_dict.*rename or delete it"):
        train(spec, run, progress=False)
    assert load_torch(run / "last.pt")["model"].keys() == state["model"].keys()   # left as it was
