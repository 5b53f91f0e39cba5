"""The dependency lists agree (pyproject.toml, environment.yml, the rules' conda env),
and the rules run soften from the workflow's own source in an environment that has
soften's dependencies but not soften itself (as the rules' conda env has)."""

import os
import re
import subprocess
import sys
import sysconfig
import tomllib

import numpy as np
import pytest
import yaml

from conftest import write_config


def normalise(req):
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pip_section(path):
    env = yaml.safe_load(path.read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(normalise(r) for r in pip if not r.startswith("-e"))


def project(repo):
    return tomllib.loads((repo / "pyproject.toml").read_text())["project"]


def test_environment_yml_matches_pyproject(repo):
    p = project(repo)
    wanted = dict(map(normalise, p["dependencies"] + p["optional-dependencies"]["dev"]))
    assert pip_section(repo / "environment.yml") == wanted


def test_rule_env_pins_soften_dependencies_as_pyproject(repo):
    p = project(repo)
    core = dict(map(normalise, p["dependencies"]))
    # What drives the workflow (Snakemake, DVC) is not needed inside a job; tracking is.
    wanted = {k: v for k, v in core.items() if k not in ("snakemake", "dvc")}
    wanted |= dict(map(normalise, p["optional-dependencies"]["tracking"]))
    assert pip_section(repo / "workflow" / "envs" / "soften.yaml") == wanted


def test_core_dependencies_include_dvc(repo):
    assert "dvc" in dict(map(normalise, project(repo)["dependencies"]))  # the README's `dvc repro`


@pytest.mark.slow
def test_rules_run_the_workflows_soften_in_an_env_without_it(repo, default_config, tmp_path):
    # An interpreter with this venv's packages but not soften: a venv that sees the
    # site-packages as a plain path (the editable install's .pth there is not processed).
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site = next(env_dir.glob("lib/python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = str(env_dir / "bin") + os.pathsep + env["PATH"]
    python = str(env_dir / "bin" / "python")
    probe = subprocess.run([python, "-c", "import torch, snakemake, soften"], env=env, cwd=tmp_path,
                           capture_output=True, text=True)
    assert "No module named 'soften'" in probe.stderr  # the premise: soften is not installed there

    work = tmp_path / "work"
    cfg = write_config(tmp_path / "tiny.yaml", default_config,
                       experiments={"main": {"noise": ["symmetric-0.4"], "methods": ["pgd-at"], "seeds": [0]},
                                    "autoattack": None, "transfer": None, "calibration": None, "masking": None})
    proc = subprocess.run([python, "-m", "snakemake", "all", "-s", str(repo / "workflow" / "Snakefile"),
                           "--directory", str(work), "--cores", "1", "--until", "noise", "--configfile", str(cfg)],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = yaml.safe_load((work / "resources" / "noise" / "digits" / "symmetric-0.4.json").read_text())
    with np.load(work / "resources" / "datasets" / "digits.npz") as f:
        n_train = len(f["y_train"])
    assert meta["noise"] == "symmetric-0.4" and meta["n"] == n_train > 0
