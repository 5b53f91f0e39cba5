"""The DVC route: `dvc repro` runs the same stages, and a local remote round-trips the outputs."""

import hashlib
import shutil
import subprocess

import pytest

from conftest import write_config

pytestmark = pytest.mark.slow


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dvc_repro_push_pull_round_trip(repo, default_config, tmp_path, subprocess_env):
    if shutil.which("dvc", path=subprocess_env["PATH"]) is None:
        pytest.skip("dvc is not installed (pip install -e .[dev])")
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(repo / "dvc.yaml", work)
    shutil.copy(repo / ".dvcignore", work)
    shutil.copytree(repo / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "config").mkdir()
    write_config(work / "config" / "config.yaml", default_config,
                 experiment={"noise": ["symmetric-0.4"], "methods": ["pgd-at"], "seeds": [0]},
                 datasets={"digits": {"training": {"epochs": 1, "lr_milestones": [1]}}},
                 evaluation={"n_examples": 50})
    env = dict(subprocess_env, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp_path / "site"), CI="1")

    def run(*cmd):
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return proc.stdout + proc.stderr

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "repro")
    run_dir = work / "results" / "digits" / "symmetric-0.4" / "cnn" / "pgd-at" / "seed0"
    table = work / "results" / "tables" / "dvc" / "digits" / "main.md"
    assert "pgd-at" in table.read_text()
    assert "up to date" in run("dvc", "repro")

    before = {p: digest(p) for p in [run_dir / "final.pt", run_dir / "eval" / "best-pgd20.json", table]}
    run("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    run("dvc", "push")
    shutil.rmtree(work / "results")
    shutil.rmtree(work / ".dvc" / "cache")
    run("dvc", "pull")
    assert {p: digest(p) for p in before} == before
    assert "up to date" in run("dvc", "status")
