"""A job process ends when the process that started it is killed with SIGKILL
(soften.pipeline.lifetime), whether it is the direct child or a shell sits in between."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from soften.pipeline.lifetime import is_snakemake

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and pidfd are Linux features")

# The job: watch the process given (or its parent), report how, write its pid, and sleep;
# the finally block must run (SIGTERM becomes SystemExit) so it leaves a mark.
JOB = textwrap.dedent("""
    import os, sys, time
    from soften.pipeline import lifetime
    watched = int(sys.argv[2]) if len(sys.argv) > 2 else os.getppid()
    print(lifetime.end_with(watched), flush=True)
    open(sys.argv[1] + ".pid", "w").write(str(os.getpid()))
    with lifetime.clean_exit_on_sigterm():
        try:
            time.sleep(120)
        finally:
            open(sys.argv[1] + ".cleaned", "w").write("yes")
""")

# The "Snakemake": starts the job directly or through bash, then waits.
STARTER = textwrap.dedent("""
    import os, subprocess, sys
    job, mark, via_shell = sys.argv[1], sys.argv[2], sys.argv[3] == "shell"
    cmd = [sys.executable, job, mark] + ([str(os.getpid())] if via_shell else [])
    if via_shell:
        cmd = ["bash", "-c", "set -euo pipefail; " + " ".join(cmd) + "; true"]
    child = subprocess.Popen(cmd)
    child.wait()
""")


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@linux_only
@pytest.mark.parametrize("route,mechanism", [("direct", "prctl"), ("shell", "pidfd")])
def test_a_job_ends_with_the_process_that_started_it(tmp_path, route, mechanism):
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "starter.py").write_text(STARTER)
    mark = tmp_path / "mark"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    starter = subprocess.Popen([sys.executable, str(tmp_path / "starter.py"), str(tmp_path / "job.py"), str(mark), route],
                               env=env, stdout=subprocess.PIPE, text=True)
    assert starter.stdout.readline().strip() == mechanism
    deadline = time.time() + 30
    while not Path(f"{mark}.pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    pid = int(Path(f"{mark}.pid").read_text())
    assert _alive(pid)
    starter.kill()  # SIGKILL: the starter cannot pass anything on
    starter.wait()
    deadline = time.time() + 20
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the job outlived the process that started it"
    assert Path(f"{mark}.cleaned").read_text() == "yes"  # ended through SystemExit: finally blocks ran
    starter.stdout.close()


def test_snakemake_is_recognised_by_its_command_line():
    assert is_snakemake(["/venv/bin/python", "/venv/bin/snakemake", "--cores", "2"])
    assert is_snakemake(["snakemake", "all"])
    assert is_snakemake(["python3", "-m", "snakemake", "all"])
    assert not is_snakemake(["/usr/bin/bash", "-c", "set -euo pipefail; python -m soften train --out x"])
    assert not is_snakemake(["python", "-m", "soften", "train", "--out", "snakemake"])
    assert not is_snakemake([])


def test_the_cli_leaves_the_callers_sigterm_handler_alone(tmp_path):
    # main() may run inside another program (a test runner, a notebook): its SIGTERM handling is restored.
    import signal

    from soften.__main__ import main

    before = signal.getsignal(signal.SIGTERM)
    main(["noise", "--dataset-npz", str(tmp_path / "missing.npz"), "--noise", "none", "--out", str(tmp_path / "n.npz")])
    assert signal.getsignal(signal.SIGTERM) is before
