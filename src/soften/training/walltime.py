"""Stop a training job before its scheduler's wall-time limit kills it.

A SLURM job that reaches its time limit is killed (SIGTERM, SIGKILL ``KillWait``
seconds later) and recorded TIMEOUT, whatever it was doing; Snakemake then deletes
the job's outputs. So a train job checks, after each epoch's checkpoint, whether
another epoch still fits before the job's end time. When it does not, it stops
there with :class:`WallTimeStop` (one line, exit status 2) while ``last.pt`` holds
that epoch, and the workflow submits the job again, which resumes from it.

The end time is read once, at the first check:

- ``SOFTEN_WALLTIME_END`` (Unix seconds), for other schedulers and for tests;
- ``SLURM_JOB_END_TIME`` (Unix seconds; SLURM 23.02 and later set it);
- ``squeue -h -j $SLURM_JOB_ID -o %e`` (SLURM 22.05, which does not set it);
- none outside a batch job: no limit, no stop.

SIGUSR1 also ends the run after the current epoch (a site that warns jobs before
pre-empting them; note that ``sbatch --signal=B:...`` signals the batch shell only).

Another epoch fits when ``now + EPOCH_SAFETY x (longest epoch so far) + MARGIN_S``
is before the end: the longest epoch, because monitoring epochs are slower; a
margin for saving and exiting. An epoch longer than the whole limit cannot be
saved at all: give the job a longer runtime (config ``cluster``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from datetime import datetime

from soften.errors import SoftenError

log = logging.getLogger("soften.walltime")

#: The next epoch is predicted to take this many times the longest one so far.
EPOCH_SAFETY = 1.5
#: Seconds kept for the process's exit (each epoch's own save is part of its measured time).
MARGIN_S = 15.0


class WallTimeStop(SoftenError):
    """Training stopped before the job's wall-time limit; ``last.pt`` holds the last epoch."""


def _squeue_end(job_id: str) -> float | None:
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%e"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
        return datetime.fromisoformat(out).timestamp()  # local time, as squeue prints it
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def job_end_time(environ: dict[str, str] | None = None) -> float | None:
    """The job's end time in Unix seconds, or None when there is no limit to respect."""
    env = os.environ if environ is None else environ
    for key in ("SOFTEN_WALLTIME_END", "SLURM_JOB_END_TIME"):
        if env.get(key, "").strip():
            return float(env[key])
    if env.get("SLURM_JOB_ID"):
        end = _squeue_end(env["SLURM_JOB_ID"])
        if end is None:
            log.warning("cannot read the end time of SLURM job %s (squeue); training will not stop before "
                        "its wall-time limit", env["SLURM_JOB_ID"])
        return end
    return None


class WallClock:
    """Decides after each epoch whether the run goes on; see the module docstring."""

    def __init__(self, end: float | None = None, now=time.time):
        self._now = now
        self._end = end
        self._looked = end is not None
        self._last = now()
        self._longest = 0.0
        self._signalled = False
        if hasattr(signal, "SIGUSR1"):
            try:
                signal.signal(signal.SIGUSR1, self._on_signal)
            except ValueError:  # not the main thread: no signal, the end time still counts
                pass

    def _on_signal(self, signum, frame):
        self._signalled = True

    def next_epoch_fits(self) -> bool:
        """Record the epoch that just ended; whether another one fits before the end."""
        now = self._now()
        self._longest, self._last = max(self._longest, now - self._last), now
        if not self._looked:
            self._end, self._looked = job_end_time(), True
        if self._signalled:
            return False
        return self._end is None or now + EPOCH_SAFETY * self._longest + MARGIN_S < self._end

    def check(self, epoch: int, epochs: int, out) -> None:
        """Raise :class:`WallTimeStop` after ``epoch`` when epochs remain and the next would not fit."""
        if epoch < epochs and not self.next_epoch_fits():
            why = "SIGUSR1" if self._signalled else f"the next epoch (~{self._longest:.0f} s) would end past the job's limit"
            raise WallTimeStop(f"stopped after epoch {epoch} of {epochs} in {out}: {why}; last.pt holds epoch {epoch}, "
                               "run the same command again (the workflow resubmits it) to continue")
