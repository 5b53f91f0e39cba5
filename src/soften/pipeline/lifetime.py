"""A stage process ends with the Snakemake that started it.

Snakemake runs a job as ``bash -c "set -euo pipefail; python -m soften STAGE ..."``.
Killed with SIGKILL, Snakemake cannot stop its jobs: a training job would run on,
holding its GPU slot and its run folder, while the next Snakemake has to be told
``snakemake --unlock``. So a stage started under Snakemake (its parent or
grandparent) watches that process and stops itself with SIGTERM when it exits:
through ``prctl(PR_SET_PDEATHSIG)`` when Snakemake is the parent, through a pidfd
(Linux 5.3+) when a shell sits in between. SIGTERM makes the stage raise
``SystemExit`` so that ``finally`` blocks still remove temporaries and release
locks. Outside Snakemake, and off Linux, nothing is done: a stage started by hand
from a shell keeps running when that shell exits, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("soften.pipeline.lifetime")

PR_SET_PDEATHSIG = 1


def _parent_and_argv(pid: int) -> tuple[int, list[str]] | None:
    """``pid``'s parent pid and command line, from /proc (None where unavailable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    # The command name (2nd field) is parenthesised and may hold spaces: the ppid follows the last ')'.
    return int(stat[stat.rindex(")") + 2:].split()[1]), argv


def is_snakemake(argv: list[str]) -> bool:
    """``snakemake ...``, ``python .../bin/snakemake ...`` or ``python -m snakemake ...``."""
    words = [a for a in argv if a]
    return any(Path(w).name == "snakemake" for w in words[:2]) or \
        any(w == "-m" and nxt == "snakemake" for w, nxt in zip(words, words[1:]))


def snakemake_ancestor(levels: int = 2) -> int | None:
    """The pid of the Snakemake process among this process's parent and grandparent."""
    pid = os.getpid()
    for _ in range(levels):
        info = _parent_and_argv(pid)
        if info is None or info[0] <= 1:
            return None
        pid = info[0]
        parent = _parent_and_argv(pid)
        if parent is not None and is_snakemake(parent[1]):
            return pid
    return None


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def end_with(pid: int, sig: int = signal.SIGTERM) -> str:
    """Deliver ``sig`` to this process when process ``pid`` exits. Returns how:
    ``"prctl"`` (``pid`` is the parent), ``"pidfd"`` (a watcher thread), or ``""`` (unsupported)."""
    if not sys.platform.startswith("linux"):
        return ""
    if pid == os.getppid() and _prctl_pdeathsig(sig):
        if os.getppid() != pid:  # it exited before prctl took effect
            os.kill(os.getpid(), sig)
        return "prctl"
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return ""

    def watch():
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll()  # returns when the process has exited
        log.warning("the Snakemake process %d that started this job has ended; stopping", pid)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name=f"end-with-{pid}", daemon=True).start()
    return "pidfd"


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def clean_exit_on_sigterm():
    """While the body runs, SIGTERM raises SystemExit (so ``finally`` blocks run);
    the previous handler is restored afterwards (main() may run inside another program)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_with_snakemake() -> str:
    """In a stage process: end with the Snakemake that started it (see the module docstring)."""
    pid = snakemake_ancestor()
    return end_with(pid) if pid is not None else ""
