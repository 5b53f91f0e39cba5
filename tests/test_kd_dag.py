"""Distillation methods declare their teacher runs; Snakemake builds teachers first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soften.pipeline.config import ConfigError, resolve_run, validate_config

from _methods_fixtures import tiny_config

REPO = Path(__file__).resolve().parents[1]


def test_kd_spec_lists_teacher_best_checkpoints(tmp_path):
    cfg = tiny_config(tmp_path / "results", tmp_path / "res", methods=["kd-at", "kd-swa"])
    spec = resolve_run(cfg, "digits", "none", "cnn", "kd-swa", 3)
    assert [(t["method"], t["weight"]) for t in spec["teachers"]] == [("standard", 0.1), ("pgd-at", 0.6)]
    assert spec["teachers"][1]["checkpoint"] == f"{tmp_path / 'results'}/digits/none/cnn/pgd-at/seed3/best.pt"
    assert "swa" in spec["method_params"]
    assert "teachers" not in resolve_run(cfg, "digits", "none", "cnn", "pgd-at", 3)   # plain runs: spec unchanged


@pytest.mark.parametrize("teachers", [{"kd-at": 0.6}, {"pgd-at+kd-swa": 0.5}])
def test_teacher_cycle_is_a_config_error(tmp_path, teachers):
    cfg = tiny_config(tmp_path / "results", tmp_path / "res", methods=["kd-at"])
    cfg["methods"]["kd-at"] = {"teachers": teachers}
    cfg["methods"]["kd-swa"] = {"teachers": {"kd-at": 0.5}}
    with pytest.raises(ConfigError, match="teacher cycle"):
        validate_config(cfg)


def test_per_dataset_method_overrides(tmp_path):
    cfg = tiny_config(tmp_path / "results", tmp_path / "res")
    cfg["methods"]["adr"] = {"temperature_high": 3.0, "lam_low": 0.5}
    cfg["datasets"]["digits"]["methods"] = {"adr": {"temperature_high": 1.5, "temperature_low": 1.0}}
    cfg = validate_config(cfg)
    adr = resolve_run(cfg, "digits", "none", "cnn", "pgd-at+adr", 0)["method_params"]["adr"]
    assert (adr["temperature_high"], adr["temperature_low"], adr["lam_low"], adr["lam_high"]) == (1.5, 1.0, 0.5, 0.95)
    cfg["datasets"]["digits"]["methods"] = {"adr": {"tau": 1.0}}
    with pytest.raises(ConfigError, match="unknown hyperparameters"):
        resolve_run(cfg, "digits", "none", "cnn", "pgd-at+adr", 0)


@pytest.mark.slow
@pytest.mark.parametrize("method, teachers", [("kd-at", ["pgd-at"]), ("kd-swa", ["standard", "pgd-at"])])
def test_snakemake_dry_run_schedules_teachers(tmp_path, method, teachers):
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    assert snakemake, "snakemake is not installed"
    config = {
        "results_dir": str(tmp_path / "results"),
        "resources_dir": str(tmp_path / "resources"),
        "datasets": {"digits": {"source": "digits", "val_size": 144, "threat": {"eps": 0.1, "alpha": 0.025, "steps": 10}}},
        "experiments": {"main": {"datasets": ["digits"], "noise": ["none"], "archs": ["cnn"], "methods": [method],
                                 "seeds": [0], "attacks": ["natural"]}},
    }
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([snakemake, "-n", "-s", "workflow/Snakefile", "--configfile", str(cfg_file)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = [block for block in proc.stdout.split("\n\n") if block.lstrip().startswith(("rule train", "[")) and "rule train:" in block]
    scheduled = {line.split("method=")[1].split(",")[0] for block in jobs for line in block.splitlines() if "wildcards:" in line}
    assert scheduled == {method, *teachers}
    student = next(block for block in jobs if f"method={method}," in block)
    inputs = next(line for line in student.splitlines() if line.strip().startswith("input:"))
    for teacher in teachers:
        assert f"/cnn/{teacher}/seed0/best.pt" in inputs
