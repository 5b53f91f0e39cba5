"""The SLURM profile (workflow/profiles/slurm) with the real executor plugin: what each
job would ask sbatch for, and that the local rules never go to the queue."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import write_config

pytestmark = pytest.mark.slow
pytest.importorskip("snakemake_executor_plugin_slurm")

GPU_RULES = {"train", "evaluate", "evaluate_attack", "calibrate", "sanity", "craft_transfer", "evaluate_transfer"}
LOCAL_RULES = {"fetch", "noise", "tables", "figures"}


def snakemake(repo, workdir, env, *args):
    cmd = [sys.executable, "-m", "snakemake", "all", "-s", str(repo / "workflow" / "Snakefile"),
           "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def job_resources(log: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if rule and res:
            jobs.append((rule.group(1), dict(kv.split("=", 1) for kv in res.group(1).split(", "))))
    return jobs


def test_slurm_profile_submits_each_job_with_the_resources_of_its_spec(repo, tmp_path, subprocess_env):
    """A CPU run of a paper config: no GPU, the config's threads as CPUs, memory and runtime
    per job from soften.tools.cluster; the profile itself sizes nothing."""
    from soften.tools import cluster as C
    from soften.pipeline.config import load_config

    profile = yaml.safe_load((repo / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert "set-resources" not in profile and "default-resources" not in profile
    log = snakemake(repo, tmp_path, subprocess_env, "-n", "--profile", str(repo / "workflow" / "profiles" / "slurm"),
                    "--configfile", str(repo / "config" / "sglr.yaml"), "--config", "device=cpu")
    cfg = load_config([repo / "config" / "sglr.yaml"], {"device": "cpu"})
    jobs = job_resources(log)
    rules = {rule for rule, _ in jobs}
    assert {"train", "evaluate", "evaluate_attack", "fetch", "tables", "figures"} <= rules
    sized = 0
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if not (rule and res) or rule.group(1) not in GPU_RULES:
            if rule and res:
                assert "gpu=" not in res.group(1) or "gpu=0" in res.group(1), block  # no --gpus for the others
            continue
        got = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
        w = dict(kv.split("=", 1) for kv in re.search(r"^\s+wildcards: (.*)$", block, re.M).group(1).split(", "))
        want = C.resources(cfg, rule.group(1), w)
        assert {k: int(got[k]) for k in want} == want, (rule.group(1), w, got)
        assert want["gpu"] == 0 and want["cpus_per_task"] == 4
        sized += 1
    assert sized > 100


def test_local_gpu_resource_limits_still_apply_without_the_profile(repo, tmp_path, subprocess_env):
    log = snakemake(repo, tmp_path, subprocess_env, "-n", "--cores", "8", "--resources", "gpu=2",
                    "--configfile", str(repo / "config" / "sglr.yaml"), "--config", "device=cuda")
    gpus = {rule: res.get("gpu") for rule, res in job_resources(log)}
    assert gpus["train"] == "1" and gpus["evaluate_attack"] == "1"
    assert gpus["fetch"] is None and gpus["tables"] is None


def test_fetch_and_noise_run_on_the_submitting_host(repo, default_config, tmp_path, subprocess_env):
    """The real SLURM executor on a host without SLURM: the local rules run here, as on a
    login node (a job sent to the queue would fail: there is no sbatch)."""
    cfg = write_config(tmp_path / "tiny.yaml", default_config,
                       experiments={"main": {"noise": ["symmetric-0.4"], "methods": ["pgd-at"], "seeds": [0]},
                                    "autoattack": None, "transfer": None, "calibration": None, "masking": None})
    log = snakemake(repo, tmp_path, subprocess_env, "--profile", str(repo / "workflow" / "profiles" / "slurm"),
                    "--until", "noise", "--configfile", str(cfg))
    assert "localrule fetch:" in log and "localrule noise:" in log
    assert (tmp_path / "resources" / "noise" / "digits" / "symmetric-0.4.npz").exists()
    assert "sbatch" not in log
