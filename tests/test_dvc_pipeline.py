"""One DAG: the generated dvc.yaml is Snakemake's DAG, and each tool finds the other's work up to date.

Replaces the old hand-written-dvc.yaml round trip. The reference for "the same
pipeline" is Snakemake itself: its dry run lists every job with its inputs,
outputs and shell command, and each DVC stage must be exactly one of them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _dag import dry_run_jobs, dvc_command, dvc_status_stages, snakemake
from _warm_python import serve_warm, warm_env
from conftest import write_config

SRC = "src/soften/"


def _dvc_outs(stage: dict) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]


def _generate(root: Path, config: Path, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-m", "soften", "dvc_pipeline", "--configfile", str(config.relative_to(root))],
                          cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_committed_dvc_yaml_is_generated_from_the_default_config(repo, subprocess_env):
    assert _generate(repo, repo / "config" / "config.yaml", subprocess_env) == (repo / "dvc.yaml").read_text(), \
        "dvc.yaml is stale: run `make dvc.yaml` (python -m soften dvc_pipeline --configfile config/config.yaml > dvc.yaml)"


def test_dvc_lock_is_not_committed_on_main(repo):
    """A lock on main would go stale with every source edit and call every stage changed
    (README, "Sharing one set of results"): it is ignored, and not tracked."""
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "dvc.lock"], cwd=repo, capture_output=True, text=True)
    assert tracked.returncode != 0, "dvc.lock is tracked: git rm --cached dvc.lock"
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", "dvc.lock"], cwd=repo)
    assert ignored.returncode == 0, "dvc.lock is not in .gitignore"


@pytest.fixture(scope="module")
def kd_config(tmp_path_factory, default_config):
    """The default config plus a distillation experiment (teacher runs as inputs)."""
    kd = {"datasets": ["digits"], "noise": ["none"], "archs": ["cnn"], "methods": ["kd-swa"], "seeds": [0],
          "attacks": ["natural", "pgd20"]}
    return write_config(tmp_path_factory.mktemp("kd") / "kd.yaml", default_config, experiments={"kd": kd})


@pytest.mark.parametrize("which", ["default", "kd", "sglr", "adr"])
def test_every_dvc_stage_is_one_snakemake_job_with_the_same_command(which, repo, kd_config, subprocess_env, tmp_path):
    """Dry runs only: the demo, a KD grid, and every table of both papers (variants, noise-gap)."""
    from soften.pipeline.config import load_config
    from soften.pipeline.dvc_pipeline import stages as dvc_stages

    config = {"default": repo / "config" / "config.yaml", "kd": kd_config}.get(which, repo / "config" / f"{which}.yaml")
    stages = dvc_stages(load_config([config]), repo)
    proc = snakemake(tmp_path, repo / "workflow" / "Snakefile", config, subprocess_env, "-n", "-p")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [j for j in dry_run_jobs(proc.stdout + proc.stderr) if j.rule != "all"]
    assert len(jobs) == len(stages) and jobs
    by_command = {dvc_command(j.shell): j for j in jobs}
    assert len(by_command) == len(jobs), "two Snakemake jobs with one command"
    for name, stage in stages.items():
        job = by_command.get(stage["cmd"])
        assert job is not None, f"DVC stage {name} runs a command no Snakemake job runs: {stage['cmd'][:200]}"
        assert name.split("/")[0] == job.rule
        assert sorted(d for d in stage["deps"] if not d.startswith(SRC)) == sorted(job.input), name
        assert sorted(_dvc_outs(stage)) == sorted(job.output), name
    if which in ("sglr", "adr"):
        return
    rules = {j.rule for j in jobs}
    assert rules == {"fetch", "noise", "train", "evaluate", "evaluate_attack", "calibrate", "sanity",
                     "craft_transfer", "evaluate_transfer", "tables", "figures", "verdict"}
    assert "train/digits/none/cnn/pgd-at/seed100" in stages  # the transfer source
    if which == "default":
        # AutoAttack exactly where an experiment asks: the autoattack experiment's
        # 3 methods, seed 0, 40% symmetric noise, the wide CNN, both checkpoints, and nothing else.
        aa = sorted(n for n in stages if n.startswith("evaluate_attack/"))
        assert len(aa) == 6 and all(n.endswith("/aa") and "/symmetric-0.4/cnn-wide/" in n and "/seed0/" in n for n in aa)
    else:  # kd-swa's teachers are trained and are the student's inputs
        student = stages["train/digits/none/cnn/kd-swa/seed0"]
        assert {"results/digits/none/cnn/standard/seed0/best.pt", "results/digits/none/cnn/pgd-at/seed0/best.pt"} <= \
            set(student["deps"])


def test_dvc_stage_deps_are_the_stage_code(repo):
    """Hand-picked facts about which code each stage runs (an edit reruns exactly these)."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]

    def code(prefix):
        deps = [set(d for d in s["deps"] if d.startswith(SRC)) for n, s in stages.items() if n.startswith(prefix + "/")]
        assert deps and all(d == deps[0] for d in deps)
        return deps[0]

    train, evaluate, tables, figures = code("train"), code("evaluate"), code("tables"), code("figures")
    assert SRC + "training/loop.py" in train and SRC + "training/loop.py" not in evaluate
    assert SRC + "evaluation/attacks.py" in evaluate and SRC + "evaluation/attacks.py" not in train
    assert SRC + "models/checkpoint.py" in evaluate  # evaluation loads checkpoints
    for common in ("__main__.py", "pipeline/stages.py", "io.py"):
        assert SRC + common in train & evaluate & tables & figures
    assert SRC + "devices.py" in train & evaluate
    assert {SRC + "reporting/published.py", SRC + "reporting/reference/paper_numbers.yaml"} <= tables - train - evaluate - figures
    assert SRC + "reporting/plots.py" in figures - tables
    assert SRC + "data/cifar.py" in code("fetch")  # builders imported lazily, by name
    # A job runs with --spec and never loads the config machinery: its edits rerun only
    # the jobs whose specs they change (through the command).
    assert not any(SRC + "pipeline/config.py" in s["deps"] for s in stages.values())


def test_a_path_outside_the_package_named_in_a_stages_code_is_not_its_data(repo):
    """devices.py reads /proc/cpuinfo: a system file, not package data. PACKAGE_DIR / an absolute
    path is that absolute path, which once put /proc/cpuinfo among train's code and broke every
    Snakemake start (code_hash: not in the subpath of src/soften)."""
    from soften.pipeline import codedeps

    assert '"/proc/cpuinfo"' in (repo / "src" / "soften" / "devices.py").read_text()
    package = (repo / "src" / "soften").resolve()
    for stage in ("train", "evaluate", "tables"):
        files = codedeps.stage_files(stage)
        assert package / "devices.py" in files or stage == "tables"
        assert all(package in f.parents for f in files), stage
        assert len(codedeps.code_hash(stage)) == 16
    assert package / "reporting" / "reference" / "paper_numbers.yaml" in codedeps.stage_files("tables")


def _digests(root: Path, stages: dict) -> dict[str, str]:
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for s in stages.values() for f in _dvc_outs(s)}


#: Modules a stage's code names that its job need not import: the CLI runs as
#: ``__main__``; the dataset builders, and soften.data's members, are imported by
#: name on first use.
NAMED_NOT_IMPORTED = {"soften.__main__", "soften.data.cifar", "soften.data.download", "soften.data.mini", "soften.data.sources",
                      "soften.data.svhn", "soften.data.tinyimagenet", "soften.data.device_data", "soften.data.fetch"}


def _check_imports(logs: Path) -> None:
    """Every soften module a job imported is in its stage's code (soften.pipeline.codedeps), and
    the code holds nothing else but NAMED_NOT_IMPORTED."""
    from soften.pipeline.codedeps import stage_modules

    seen = set()
    for log in logs.rglob("*.log"):
        stage = log.relative_to(logs).parts[0]
        imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(soften(?:\.\S+)?)\s*$", log.read_text(), re.M))
        assert imported, log
        static = stage_modules(stage)
        assert imported <= static, f"{stage} imported {sorted(imported - static)}, not in its code"
        assert static - imported <= NAMED_NOT_IMPORTED, f"{stage}: {sorted(static - imported - NAMED_NOT_IMPORTED)}"
        seen.add(stage)
    assert seen == {"fetch", "noise", "train", "evaluate", "evaluate_attack", "calibrate", "sanity",
                    "craft_transfer", "evaluate_transfer", "tables", "figures", "verdict"}


@pytest.mark.slow
def test_dvc_and_snakemake_agree_both_ways(repo, tmp_path, subprocess_env):
    """.test config: dvc repro -> snakemake has nothing to do; snakemake from scratch ->
    dvc finds the very same bytes; a code edit reruns its stage in both; placement
    reruns nothing; a local remote round-trips everything."""
    if shutil.which("dvc", path=subprocess_env["PATH"]) is None:
        pytest.skip("dvc is not installed (pip install -e .[dev])")
    work = tmp_path / "project"
    work.mkdir()
    for name in ("src", "workflow", ".test"):
        shutil.copytree(repo / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                        symlinks=True)
    shutil.copy(repo / ".dvcignore", work)
    config = work / ".test" / "config" / "config.yaml"
    snakefile = work / "workflow" / "Snakefile"
    env = dict(subprocess_env, PYTHONPATH=str(work / "src"), DVC_NO_ANALYTICS="1",
               DVC_SITE_CACHE_DIR=str(tmp_path / "site"), CI="1")

    def run(*cmd):
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    def snake(*extra):
        proc = snakemake(work, snakefile, config, env, *extra)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    (work / "dvc.yaml").write_text(_generate(work, config, env))
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    run("git", "init", "-q")
    run("dvc", "init", "-q")

    # DVC's jobs fork from a warm interpreter importing this copy's soften (tests/_warm_python.py);
    # Snakemake's below start fresh processes: equal bytes also say the two ways run alike.
    with serve_warm(work / "src") as warm:
        proc = subprocess.run(["dvc", "repro"], cwd=work, env=warm_env(env, warm), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Nothing to be done" in snake("-n")
    reference = _digests(work, stages)
    assert "up to date" in run("dvc", "status")

    # The reverse: Snakemake from scratch makes the bytes dvc.lock recorded. Each job
    # also logs the modules it imports (python -X importtime), to check soften.pipeline.codedeps.
    shutil.rmtree(work / "results")
    shutil.rmtree(work / "resources")
    proc = snakemake(work, snakefile, config, dict(env, PYTHONPROFILEIMPORTTIME="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _digests(work, stages) == reference
    _check_imports(work / "results" / "logs")
    assert "up to date" in run("dvc", "status")
    assert "Nothing to be done" in snake("-n")

    # Speed-only settings rerun nothing.
    for override in ("threads=2", "device=cpu"):
        assert "Nothing to be done" in snake("-n", "--config", override), override

    # An edit to the training loop reruns training (and what reads its outputs), nothing else directly.
    loop = work / "src" / "soften" / "training" / "loop.py"
    original = loop.read_text()
    loop.write_text(original + "\n# an edit\n")
    changed = dvc_status_stages(run("dvc", "status"))
    assert changed and changed == {n for n in stages if n.startswith("train/")}
    jobs = dry_run_jobs(snake("-n", "-p"))
    assert {j.rule for j in jobs if "Params have changed" in j.reason} == {"train"}
    loop.write_text(original)
    assert "Nothing to be done" in snake("-n")

    # A local remote round-trips every output.
    run("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    run("dvc", "push")
    shutil.rmtree(work / "results")
    shutil.rmtree(work / "resources")
    shutil.rmtree(work / ".dvc" / "cache")
    run("dvc", "pull")
    assert _digests(work, stages) == reference
    assert "up to date" in run("dvc", "status")
    # Snakemake's records (input checksums) carry it over files DVC restored in any order.
    assert "Nothing to be done" in snake("-n")


def test_placement_comes_from_flags_then_environment_then_spec(monkeypatch):
    """How a DVC job (no flags) and a Snakemake job (--threads, SOFTEN_DEVICE) are placed."""
    from argparse import Namespace

    from soften.__main__ import _placed

    for env in ("SOFTEN_DEVICE", "SOFTEN_THREADS", "SOFTEN_GPU_SLOTS", "SOFTEN_TRACKING"):
        monkeypatch.delenv(env, raising=False)
    assert _placed({"lr": 0.1}, Namespace()) == {"lr": 0.1, "device": "auto", "threads": 1, "gpu_slots": 1,
                                                 "tracking": "none"}
    monkeypatch.setenv("SOFTEN_DEVICE", "cpu")
    monkeypatch.setenv("SOFTEN_THREADS", "3")
    monkeypatch.setenv("SOFTEN_GPU_SLOTS", "4")
    monkeypatch.setenv("SOFTEN_TRACKING", "tensorboard")
    assert _placed({}, Namespace(device=None, threads=None)) == \
        {"device": "cpu", "threads": 3, "gpu_slots": 4, "tracking": "tensorboard"}
    assert _placed({}, Namespace(device="cuda:1", threads=2, gpu_slots=2, tracking="none")) == \
        {"device": "cuda:1", "threads": 2, "gpu_slots": 2, "tracking": "none"}
