"""The transfer rules craft one adversarial set per (dataset, source, attack)
and every target reads that same file (Snakemake dry run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _eval_fixtures import REPO_ROOT

GRID = {"datasets": ["digits"], "noise": ["none", "symmetric-0.4"], "archs": ["cnn"],
        "methods": ["standard", "pgd-at"], "seeds": [0, 1]}
CONFIG = {
    "datasets": {"digits": {"source": "digits", "val_size": 144, "threat": {"eps": 0.1, "alpha": 0.025, "steps": 10}}},
    "transfer": {"sources": {"wide-at": {"arch": "cnn-wide", "method": "pgd-at"}},
                 "attacks": {"pgd10": {"kind": "pgd", "steps": 10}}},
    "evaluation": {"attacks": {"natural": {"kind": "natural"}, "aa": {"kind": "autoattack"}}},
    "experiments": {
        "main": {**GRID, "attacks": ["natural"]},
        "aa": {**GRID, "methods": ["pgd-at"], "noise": ["none"], "seeds": [0], "attacks": ["aa"]},
        "transfer": {**GRID, "kind": "transfer", "sources": ["wide-at"], "attacks": ["pgd10"]},
        "calibration": {**GRID, "kind": "calibration", "seeds": [0]},
        "masking": {**GRID, "kind": "sanity", "methods": ["pgd-at"], "noise": ["none"], "checkpoints": ["best"]},
    },
}


def dry_run(tmp_path: Path, config: dict) -> str:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO_ROOT / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--workflow-profile", "none"],
        capture_output=True, text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def job_counts(out: str) -> dict[str, int]:
    block = out[out.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def test_one_crafting_job_serves_every_target(tmp_path):
    pytest.importorskip("snakemake")
    out = dry_run(tmp_path, CONFIG)
    counts = job_counts(out)
    targets = 2 * 2 * 2  # noise x methods x seeds
    assert counts["craft_transfer"] == 1
    assert counts["evaluate_transfer"] == targets  # one job per target run, both checkpoints
    assert counts["train"] == targets + 1  # the source run is trained by the same DAG
    crafted = "results/digits/transfer/wide-at/pgd10.pt"
    inputs = [line for line in out.splitlines() if line.strip().startswith("input:") and crafted in line]
    assert len(inputs) == targets
    craft = out[out.index("rule craft_transfer:"):]
    assert "results/digits/none/cnn-wide/pgd-at/seed0/best.pt" in craft.split("jobid")[0]
    # calibration: seed 0 only; sanity: pgd-at on clean labels, both seeds
    assert counts["calibrate"] == targets // 2 and counts["sanity"] == 2
    # natural on every run (one job each, both checkpoints); AutoAttack only where the
    # aa experiment asks: pgd-at / none / seed 0, best and final
    assert counts["evaluate"] == targets and counts["evaluate_attack"] == 2
    assert "results/digits/none/cnn/pgd-at/seed0/eval/final-aa.json" in out
    assert "seed1/eval/best-aa.json" not in out and "standard/seed0/eval/best-aa.json" not in out
    # one table and one figure per experiment
    assert counts["tables"] == counts["figures"] == 5


def test_no_transfer_experiment_no_transfer_jobs_and_unknown_kind_rejected(tmp_path):
    pytest.importorskip("snakemake")
    base = {**CONFIG, "experiments": {"main": CONFIG["experiments"]["main"]}}
    counts = job_counts(dry_run(tmp_path, base))
    assert "craft_transfer" not in counts and "calibrate" not in counts and "sanity" not in counts
    from soften.pipeline.config import ConfigError, validate_config

    bad = yaml.safe_load(yaml.safe_dump(CONFIG))
    bad["transfer"]["attacks"]["aa"] = {"kind": "autoattack"}
    with pytest.raises(ConfigError, match="transfer/attacks/aa/kind"):
        validate_config(bad)
    bad = yaml.safe_load(yaml.safe_dump(CONFIG))
    bad["transfer"]["attacks"]["pgd10"]["stpes"] = 3
    with pytest.raises(ConfigError, match="unknown keys"):
        validate_config(bad)
