"""A train job at a scheduler's wall time: it stops before the limit with last.pt saved,
the next job resumes to the same bytes, and a job re-run after the run finished
rewrites nothing (soften.training.walltime, soften.training.loop)."""

import hashlib
import os
import signal
import time
from datetime import datetime

import pytest

from soften.pipeline import stages
from soften.training import walltime
from soften.training.walltime import WallClock, WallTimeStop, job_end_time

OUTPUTS = ("best.pt", "final.pt", "history.csv")


def digests(run):
    return {f: hashlib.sha256((run / f).read_bytes()).hexdigest() for f in OUTPUTS}


def test_a_resume_after_the_run_finished_rewrites_nothing(tiny_spec, tmp_path):
    spec = tiny_spec(epochs=2)
    run = tmp_path / "run"
    stages.train(spec, run)
    before = {f: ((run / f).stat().st_mtime_ns, (run / f).read_bytes()) for f in OUTPUTS}
    stages.train(spec, run)
    assert {f: ((run / f).stat().st_mtime_ns, (run / f).read_bytes()) for f in OUTPUTS} == before


def test_outputs_deleted_after_the_run_finished_come_back_byte_identical(tiny_spec, tmp_path):
    # Snakemake deletes a failed job's outputs (a TIMEOUT after training ended); the
    # rerun restores them from last.pt. final.pt used to differ: its metrics row came
    # from last.pt, whose unpickled keys pickle longer than the interned originals.
    spec = tiny_spec(epochs=2)
    run = tmp_path / "run"
    stages.train(spec, run)
    first = digests(run)
    for f in OUTPUTS:
        (run / f).unlink()
    stages.train(spec, run)
    assert digests(run) == first


def test_a_run_stopped_at_the_wall_time_resumes_to_the_uninterrupted_bytes(tiny_spec, tmp_path, monkeypatch):
    spec = tiny_spec(epochs=2)
    stages.train(spec, tmp_path / "straight")
    # An end time that leaves less than the margin: after epoch 1 the next epoch cannot fit.
    monkeypatch.setenv("SOFTEN_WALLTIME_END", str(time.time() + walltime.MARGIN_S))
    with pytest.raises(WallTimeStop, match="after epoch 1 of 2"):
        stages.train(spec, tmp_path / "cut")
    from soften.io import load_torch

    assert load_torch(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "cut" / "final.pt").exists()
    monkeypatch.setenv("SOFTEN_WALLTIME_END", str(time.time() + 10**6))  # the next job: time enough
    stages.train(spec, tmp_path / "cut")
    assert digests(tmp_path / "cut") == digests(tmp_path / "straight")


def test_the_last_epoch_is_never_cut(tiny_spec, tmp_path, monkeypatch):
    # No epoch follows the last one: the run finishes whatever the clock says.
    spec = tiny_spec(epochs=1)
    monkeypatch.setenv("SOFTEN_WALLTIME_END", str(time.time()))
    stages.train(spec, tmp_path / "run")
    assert (tmp_path / "run" / "final.pt").exists()


def test_next_epoch_fits_only_with_room_for_the_longest_epoch_and_the_margin():
    clock_time = [1000.0]
    clock = WallClock(end=1000.0 + 20 + 1.5 * 20 + walltime.MARGIN_S + 5, now=lambda: clock_time[0])
    clock_time[0] += 20          # a 20 s epoch: 1.5 x 20 s + the margin + 5 s left
    assert clock.next_epoch_fits()
    clock_time[0] += 10          # a 10 s epoch: the longest (20 s) counts, so 5 s short; the last (10 s) would fit
    assert not clock.next_epoch_fits()


def test_sigusr1_stops_after_the_current_epoch():
    clock = WallClock(end=time.time() + 10**6)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert not clock.next_epoch_fits()
    with pytest.raises(WallTimeStop, match="SIGUSR1"):
        clock.check(1, 5, "run")
    clock.check(5, 5, "run")  # the last epoch: nothing to stop


def test_the_end_time_comes_from_the_environment_else_from_squeue(tmp_path):
    assert job_end_time({}) is None
    assert job_end_time({"SLURM_JOB_END_TIME": "1700000000"}) == 1700000000.0
    assert job_end_time({"SOFTEN_WALLTIME_END": "5", "SLURM_JOB_END_TIME": "7"}) == 5.0
    # SLURM 22.05 sets no SLURM_JOB_END_TIME: squeue prints the end in local time.
    fake = tmp_path / "squeue"
    fake.write_text("#!/bin/sh\n[ \"$3\" = 42 ] && echo 2026-12-07T03:10:00\n")
    fake.chmod(0o755)
    env = {"SLURM_JOB_ID": "42", "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    old = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]
    try:
        assert job_end_time(env) == datetime(2026, 12, 7, 3, 10, 0).timestamp()
        assert job_end_time({"SLURM_JOB_ID": "43"}) is None  # squeue prints nothing: no limit known
    finally:
        os.environ["PATH"] = old
