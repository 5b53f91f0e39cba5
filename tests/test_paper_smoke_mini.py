"""The CPU-scale CIFAR config (config/cifar10-mini.yaml) at the smoke scale, through the real Snakemake."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from _eval_fixtures import shared_npz_or_skip
from _paper_smoke import REPO
from _warm_python import warm_env

pytestmark = pytest.mark.slow


def test_cifar10_mini_config_smoke_end_to_end(tmp_path, subprocess_env, warm_python):
    """The CPU-scale CIFAR config, on the shared genuine-pixel subset it names (its jobs
    forked from the warm interpreter, as the paper smokes' are)."""
    npz = shared_npz_or_skip()
    overlay = tmp_path / "path.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"cifar10-mini": {"options": {"path": str(npz.resolve())}}}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "all", "-s", str(REPO / "workflow" / "Snakefile"),
                           "--directory", str(tmp_path), "--cores", "2", "--configfile",
                           str(REPO / "config" / "cifar10-mini.yaml"), str(overlay), "--config", "scale=smoke"],
                          env=warm_env(subprocess_env, warm_python), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    md = (tmp_path / "results" / "cifar10-mini-smoke" / "tables" / "main.md").read_text()
    methods = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("|")]
    assert {"standard", "pgd-at"} <= set(methods) and "aa Best" in md
