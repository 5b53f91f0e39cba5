"""The workflow on a real SLURM (`make test-slurm`: .ci/slurm-cluster.sh starts a
single-node SLURM 22.05 with slurmdbd accounting, these tests run on it).

Skipped unless SOFTEN_SLURM_DIR names the running cluster's folder. What sacct
records is the evidence: every model job submitted once, with the resources
soften.tools.cluster derives from its spec; the local rules never submitted; outputs
byte-identical to a local run; a training run longer than its wall time stopped
before the limit, resubmitted and resumed to the uninterrupted run's bytes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CLUSTER = os.environ.get("SOFTEN_SLURM_DIR")
if not CLUSTER:
    pytest.skip("no SLURM cluster (make test-slurm starts one)", allow_module_level=True)

PROFILE = REPO / "workflow" / "profiles" / "slurm"
LOCAL_RULES = {"fetch", "noise", "tables", "figures", "verdict"}
#: A hung status check must fail the test, not CI: a bound per Snakemake run, in seconds
#: (SOFTEN_SLURM_RUN_LIMIT for a slow or shared machine).
RUN_LIMIT = int(os.environ.get("SOFTEN_SLURM_RUN_LIMIT", 600))


@pytest.fixture(scope="module")
def env():
    out = dict(os.environ)
    conf = (Path(CLUSTER) / "env").read_text().split("SLURM_CONF=", 1)[1].strip()
    out.update(SLURM_CONF=conf, PATH=f"{Path(sys.executable).parent}{os.pathsep}{out['PATH']}",
               PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{out.get('PYTHONPATH', '')}")
    return out


def snakemake(workdir: Path, env: dict, *args: str, limit: int = RUN_LIMIT) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir),
           *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: Snakemake cancels the jobs it submitted
        out, _ = proc.communicate(timeout=120)
        (workdir / "snakemake.out").write_text(out)
        pytest.fail(f"snakemake did not finish in {limit} s:\n{out[-3000:]}")
    (workdir / "snakemake.out").write_text(out)
    assert proc.returncode == 0, out[-4000:]
    return out


def sacct_jobs(env: dict, run_uuid: str) -> list[dict[str, str]]:
    """Every allocation the plugin submitted under ``run_uuid`` (its job name), from accounting."""
    fields = ["JobID", "State", "AllocTRES", "Timelimit", "Comment"]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "now-2hours", "--name", run_uuid,
                          "-o", ",".join(fields)], env=env, capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("|", len(fields) - 1))) for line in out.splitlines() if line]


def run_uuid(log: str) -> str:
    return re.search(r"SLURM run ID: (\S+)", log).group(1)


def tres(job: dict[str, str]) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in job["AllocTRES"].split(",") if kv)


def minutes(timelimit: str) -> int:
    days, _, hms = timelimit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def output_digests(root: Path, outputs: set[str]) -> dict[str, str]:
    """sha256 of every declared output the run left (temp checkpoints are gone by the end)."""
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in sorted(outputs) if (root / f).is_file()}


def job_stats(log: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: how many jobs of each rule the run has."""
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


SMOKE_CASES = {
    # The default config as a GPU cluster's login node without a GPU submits it:
    # every model job asks for a GPU (cluster.gpus: 1); the jobs themselves run on CPU.
    "default-config": ([REPO / "config" / "config.yaml"], "all", {"scale": "smoke", "cluster": {"gpus": 1}}),
    # A paper experiment (SGLR Tab. B.1, calibration: 2 ResNet-18 runs) on a CPU cluster:
    # no GPU asked for, the config's 4 threads as CPUs.
    "sglr-tabB1": ([REPO / "config" / "sglr.yaml"], "tabB1", {"scale": "smoke", "device": "cpu"}),
}


@pytest.fixture()
def cifar_overlay(tmp_path):
    """CIFAR-10 in its official archive format from the shared images (the official
    archive cannot be downloaded here), as tests/_paper_smoke.py points fetch at it."""
    import numpy as np

    from _eval_fixtures import shared_npz_or_skip, write_cifar10_archive

    with np.load(shared_npz_or_skip(), allow_pickle=False) as f:
        md5 = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", f["x_train"][:60], f["y_train"][:60],
                                    f["x_test"][:20], f["y_test"][:20], f["class_names"])
    overlay = tmp_path / "archives.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"cifar10": {"options": {
        "path": str(tmp_path / "cifar-10-python.tar.gz"), "md5": md5}}}}))
    return overlay


def config_args(configfiles: list[Path], overrides: dict) -> list[str]:
    args = ["--configfile", *map(str, configfiles), "--config"]
    for k, v in overrides.items():
        args.append(f"{k}={json.dumps(v) if isinstance(v, dict) else v}")  # JSON: YAML flow style
    return args


@pytest.mark.parametrize("case", list(SMOKE_CASES))
def test_smoke_scale_under_slurm_matches_the_local_run_job_by_job(case, env, tmp_path, request):
    configfiles, target, overrides = SMOKE_CASES[case]
    if case.startswith("sglr"):
        configfiles = [*configfiles, request.getfixturevalue("cifar_overlay")]
    args = [target, *config_args(configfiles, overrides)]
    local = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
                              "--directory", str(tmp_path / "local"), "--cores", "2", *args],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    try:
        log = snakemake(tmp_path / "slurm", env, "--profile", str(PROFILE), *args)
    except BaseException:
        local.terminate()
        raise
    slurm_s = time.time() - started
    assert local.wait(timeout=RUN_LIMIT) == 0
    print(f"{case}: SLURM run {slurm_s:.0f} s")  # the benchmark is docs/performance.md; this is for the CI log

    from soften.tools import cluster as C
    from soften.pipeline import jobs as J
    from soften.pipeline.config import load_config

    cfg = load_config(configfiles, overrides)
    # The plugin's comment: rule_<rule>_wildcards_<values joined by "_", "/" as "_">.
    every = {(j.stage, "_".join(map(str, j.wildcards.values())).replace("/", "_")): j for j in J.all_jobs(cfg)}
    stats = job_stats(log)
    model_rules = {r: n for r, n in stats.items() if r in J.PLACED}
    assert model_rules.get("train") and set(stats) - set(model_rules) - {target} <= LOCAL_RULES
    submitted = sacct_jobs(env, run_uuid(log))
    comments = [s["Comment"] for s in submitted]
    assert len(comments) == len(set(comments)) == sum(model_rules.values()), "each model job submitted once"
    for record in submitted:
        stage, wildcards = re.fullmatch(r"rule_(\w+?)_wildcards_(.+)", record["Comment"]).groups()
        assert stage in model_rules, record  # never a local rule
        j = every[(stage, wildcards)]
        want, got = C.resources(cfg, j.stage, j.wildcards), tres(record)
        assert record["State"] == "COMPLETED", (j.stage, j.name, record)
        assert int(got["cpu"]) == want["cpus_per_task"] == cfg["threads"], (j.stage, got)
        assert got["mem"] == f"{want['mem_mb']}M", (j.stage, got)
        assert int(got.get("gres/gpu", 0)) == want["gpu"] == (1 if case == "default-config" else 0), (j.stage, got)
        assert minutes(record["Timelimit"]) == want["runtime"], (j.stage, record)

    outputs = {f for j in J.all_jobs(cfg) for f in j.outputs()}
    slurm_files, local_files = output_digests(tmp_path / "slurm", outputs), output_digests(tmp_path / "local", outputs)
    assert any(f.endswith(".md") for f in slurm_files)
    assert slurm_files == local_files


WALL_CONFIG = {
    "results_dir": "results", "resources_dir": "resources", "device": "cpu", "threads": 1,
    "datasets": {"digits": {
        "source": "digits", "val_size": 64, "options": {"test_fraction": 0.2, "split_seed": 0},
        "subset": {"train": 600, "val": 64, "test": 64}, "augment": {"crop_padding": 0, "flip": False},
        "threat": {"eps": 0.1, "alpha": 0.05, "steps": 2},
        "training": {"epochs": 4, "lr_milestones": [1000], "batch_size": 64, "val_attack_steps": 2,
                     "test_subset": 32, "monitor_every": 10}}},
    "evaluation": {"attacks": {"natural": {"kind": "natural"}}, "n_examples": 32},
    "experiments": {"long": {"kind": "accuracy", "datasets": ["digits"], "noise": ["none"], "archs": ["cnn"],
                             "methods": ["pgd-at"], "seeds": [0], "attacks": ["natural"]}},
    # A 1-minute partition: the run needs several jobs (retries for up to 8 of them).
    # Epochs: as many as take TRAIN_S on this machine (measured first), so that no
    # single job can hold the run.
    "cluster": {"max_runtime": 1, "min_runtime": 1, "retries": 7},
}


TRAIN_S = 80


def epochs_for(seconds: float, env: dict, work: Path, config: Path) -> int:
    """Epochs of WALL_CONFIG's run that take about ``seconds`` here, from a 4-epoch run's timings."""
    snakemake(work, env, "all", "--cores", "1", "--configfile", str(config))
    log = (work / "results" / "logs" / "train" / "digits" / "none" / "cnn" / "pgd-at" / "seed0.log").read_text()
    # Each epoch's wall-clock time is in the log ("epoch k: ... (1.2s)"), not in history.csv.
    timings = [float(t) for t in re.findall(r"epoch \d+: loss .*\((\d+(?:\.\d+)?)s", log)]
    return max(20, math.ceil(seconds / (sum(timings) / len(timings))))


def test_a_run_longer_than_its_wall_time_stops_in_time_and_resumes_to_the_same_bytes(env, tmp_path):
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(WALL_CONFIG))
    cfg = copy.deepcopy(WALL_CONFIG)
    epochs = epochs_for(TRAIN_S, env, tmp_path / "calibrate", config)
    cfg["datasets"]["digits"]["training"] = {**cfg["datasets"]["digits"]["training"], "epochs": epochs}
    config.write_text(yaml.safe_dump(cfg))
    run = "results/digits/none/cnn/pgd-at/seed0"
    local = subprocess.Popen([sys.executable, "-m", "snakemake", "all", "-s", str(REPO / "workflow" / "Snakefile"),
                              "--directory", str(tmp_path / "local"), "--cores", "1", "--configfile", str(config)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    try:
        log = snakemake(tmp_path / "slurm", env, "all", "--profile", str(PROFILE), "--configfile", str(config))
    except BaseException:
        local.terminate()
        raise
    print(f"wall-time run ({epochs} epochs): {time.time() - started:.0f} s under SLURM")
    assert local.wait(timeout=RUN_LIMIT) == 0

    submitted = sacct_jobs(env, run_uuid(log))
    train = [s for s in submitted if s["Comment"].startswith("rule_train_")]
    assert len(train) >= 2, f"the run fit one job: {train} (make it longer)"
    assert [s["State"] for s in train] == ["FAILED"] * (len(train) - 1) + ["COMPLETED"], train  # never TIMEOUT
    assert all(minutes(s["Timelimit"]) == 1 for s in train)
    # Every attempt's log kept (<log>.attempts: Snakemake deletes a failed job's log before the
    # next attempt): one header per SLURM job, each stop said why.
    train_log = (tmp_path / "slurm" / "results" / "logs" / "train" / "digits" / "none" / "cnn" / "pgd-at" /
                 "seed0.log.attempts").read_text()
    assert [f"SLURM job {s['JobID']})" in train_log for s in train] == [True] * len(train)
    assert train_log.count("stopped after epoch") == len(train) - 1
    for f in ("best.pt", "final.pt", "history.csv"):
        slurm, local = tmp_path / "slurm" / run / f, tmp_path / "local" / run / f
        assert slurm.read_bytes() == local.read_bytes(), f


def test_without_accounting_the_squeue_status_command_finishes(env, tmp_path):
    """The README's route for a cluster without slurmdbd (SOFTEN_SLURM_ACCOUNTING=0): squeue."""
    if os.environ.get("SOFTEN_SLURM_ACCOUNTING", "1") != "0":
        pytest.skip("this cluster has accounting (make test-slurm runs this on one without)")
    probe = subprocess.run(["sacct", "-n"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 or "disabled" in probe.stderr  # sacct really is unavailable here
    target = "results-smoke/digits/symmetric-0.4/cnn-wide/pgd-at/seed0/history.csv"
    snakemake(tmp_path, env, target, "--profile", str(PROFILE), "--slurm-status-command", "squeue",
              "--config", "scale=smoke")
    assert (tmp_path / target).is_file()
