"""The paper smokes' warm interpreter (tests/_warm_python.py) behaves as ``python -m soften``
would: same output streams, same exit status, the job's own working directory and
environment; anything other than ``-m soften`` goes to the real interpreter."""

from __future__ import annotations

import subprocess

import pytest

from _warm_python import warm_env

pytestmark = pytest.mark.slow


def _run(warm, subprocess_env, cwd, *args, **env):
    return subprocess.run(["python", *args], cwd=cwd, env=dict(warm_env(subprocess_env, warm), **env),
                          capture_output=True, text=True, timeout=120)


def test_the_shim_runs_soften_in_the_server_with_the_jobs_streams_and_status(warm_python, subprocess_env, tmp_path):
    # A user error: one line on stderr, status 2, as tests/test_cli.py expects of a fresh process.
    proc = _run(warm_python, subprocess_env, tmp_path, "-m", "soften", "evaluate_attack", "--checkpoint", "missing.pt",
                "--dataset-npz", "d.npz", "--spec", '{"attack": "natural", "params": {"kind": "natural"}}', "--out", "x.json")
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1].startswith("soften evaluate_attack: error:")
    assert "missing.pt" in proc.stderr and "Traceback" not in proc.stderr
    # Output, the working directory and the environment are the job's (SOFTEN_THREADS: a placement variable).
    proc = _run(warm_python, subprocess_env, tmp_path, "-m", "soften", "noise", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m soften noise")
    (tmp_path / "cfg.yaml").write_text("not: [valid")
    proc = _run(warm_python, subprocess_env, tmp_path, "-m", "soften", "show-config", "--configfile", "cfg.yaml")
    assert proc.returncode == 2 and "cfg.yaml" in proc.stderr
    # Anything else is the real interpreter, arguments and status untouched.
    proc = _run(warm_python, subprocess_env, tmp_path, "-c", "import sys; print(sys.argv[1:]); sys.exit(3)", "a b")
    assert proc.returncode == 3 and proc.stdout.strip() == "['a b']"
