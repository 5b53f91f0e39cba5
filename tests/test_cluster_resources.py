"""What each job asks a scheduler for comes from its own spec (soften.tools.cluster): no GPU
for a CPU run, the config's threads as CPUs, memory from the dataset, runtime from
`python -m soften plan`'s cost model with the config's margin and limits."""

import math

import pytest

from soften.tools import cluster as C
from soften.pipeline import jobs as J
from soften.pipeline import layout as L
from soften.tools import plan
from soften.pipeline.config import ConfigError, load_config


def model_jobs(cfg):
    return [j for j in J.all_jobs(cfg) if j.stage in J.PLACED]


@pytest.fixture(scope="module")
def sglr(repo):
    return lambda **over: load_config([repo / "config" / "sglr.yaml"], over)


def test_a_cpu_run_asks_for_no_gpu_and_the_threads_it_uses(repo):
    cfg = load_config([repo / "config" / "config.yaml"], {"device": "cpu", "threads": 3, "scale": "full"})
    jobs = model_jobs(cfg)
    assert {j.stage for j in jobs} >= {"train", "evaluate", "evaluate_attack", "calibrate", "sanity"}
    for j in jobs:
        res = C.resources(cfg, j.stage, j.wildcards)
        assert res["gpu"] == 0 and res["cpus_per_task"] == 3, (j.stage, res)


def test_the_smoke_scale_asks_for_its_one_thread_and_no_gpu_on_a_cpu_host(repo, monkeypatch):
    monkeypatch.setattr(C, "host_has_cuda", lambda: False)
    cfg = load_config([repo / "config" / "sglr.yaml"], {"scale": "smoke"})  # device auto; sglr.yaml: threads 4
    assert {tuple(sorted((k, v) for k, v in C.resources(cfg, j.stage, j.wildcards).items() if k != "runtime"))
            for j in model_jobs(cfg)} == {(("cpus_per_task", 1), ("gpu", 0), ("mem_mb", 2500))}
    # 2,000 MB + 3 x (4 + 2 + 4 images of 3,072 bytes) = 2,000.1 MB, rounded up to 500 MB


def test_gpus_follow_the_device_unless_the_config_says(sglr, monkeypatch):
    monkeypatch.setattr(C, "host_has_cuda", lambda: False)
    assert C.gpus(sglr(device="cuda")) == 1 and C.gpus(sglr(device="cuda:1")) == 1
    assert C.gpus(sglr(device="auto")) == 0 and C.gpus(sglr(device="cpu")) == 0
    monkeypatch.setattr(C, "host_has_cuda", lambda: True)
    assert C.gpus(sglr(device="auto")) == 1
    # A login node without GPUs submitting to GPU nodes says so:
    assert C.gpus(sglr(device="cpu", cluster={"gpus": 2})) == 2
    with pytest.raises(ConfigError, match="cluster/gpus"):
        sglr(cluster={"gpus": "all"})


def test_memory_is_a_base_plus_three_copies_of_the_images(sglr):
    cfg = sglr()
    # CIFAR-10: 50,000 training images and a quarter more (test, validation) of 32x32x3 bytes.
    by_hand = 2000 + 3 * 50_000 * 1.25 * 3072 / 1e6           # 2576 MB, rounded up to 500 MB
    assert C.mem_mb(cfg, "cifar10") == 3000 == math.ceil(by_hand / 500) * 500
    assert C.mem_mb(sglr(cluster={"mem_mb": 9000}), "cifar10") == 9000


def test_runtime_is_plans_estimate_with_the_margin_within_the_limits(sglr):
    cfg = sglr(device="cuda")
    run = L.Run("cifar10", "none", "resnet18", "pgd-at", 0)
    hours = plan.train_hours(cfg, run, C.figures(cfg))   # the plan command's per-epoch model
    assert hours > 1                                    # 200 epochs of ResNet-18 PGD-AT: hours on any GPU
    w = run.wildcards()
    assert C.runtime(cfg, "train", w) == math.ceil(2 * hours * 60)                      # default margin 2
    assert C.runtime(sglr(device="cuda", cluster={"runtime_margin": 3}), "train", w) == math.ceil(3 * hours * 60)
    assert C.runtime(sglr(device="cuda", cluster={"max_runtime": 60}), "train", w) == 60
    assert C.runtime(sglr(device="cuda", scale="smoke"), "train", w) == 10              # min_runtime
    assert C.runtime(sglr(device="cuda", scale="smoke", cluster={"min_runtime": 3}), "train", w) == 3
    # An evaluation job is costed on the attacks it runs: AutoAttack more than natural + PGD-20.
    aa = {**w, "ckpt": "best", "attack": "aa"}
    assert C.estimated_hours(cfg, "evaluate_attack", aa) > C.estimated_hours(cfg, "evaluate", w) > 0


def test_a_run_longer_than_the_partition_gets_one_retry_per_segment(sglr):
    cfg = sglr(device="cuda", cluster={"max_runtime": 600, "retries": 1})
    longest = max(C.needed_minutes(cfg, "train", j.wildcards) for j in model_jobs(cfg) if j.stage == "train")
    assert longest > 600                               # WRN-34-10: longer than a 10-hour partition
    assert C.train_retries(cfg, {}) == math.ceil(longest / 600) - 1 + 1
    assert C.train_retries(sglr(device="cuda"), {}) == 2   # no limit: one job per run, cluster.retries
    assert C.train_retries(cfg, {"SLURM_JOB_ID": "7"}) == 0  # the job step inside an allocation: never


def test_config_readme_states_the_schemas_cluster_defaults(repo):
    import re

    import yaml

    from soften.pipeline.config import schema

    section = (repo / "config" / "README.md").read_text().split("## Cluster")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M))
    props = schema()["properties"]["cluster"]["properties"]
    assert rows.keys() == props.keys()
    assert {k: yaml.safe_load(v) for k, v in rows.items()} == {k: p["default"] for k, p in props.items()}


def test_cpu_jobs_are_costed_with_this_cpus_benchmark_when_there_is_one(repo, tmp_path, monkeypatch):
    import shutil

    cfg = load_config([repo / "config" / "config.yaml"], {"device": "cpu"})
    monkeypatch.setattr(C, "BENCH_DIR", tmp_path)
    monkeypatch.setattr(C, "cpu_name", lambda: "Intel(R) Xeon(R) Processor")
    assert C.figures(cfg).label == plan.reference().label           # none for this CPU: the reference
    shutil.copy(repo / "benchmarks" / "results" / "intel-r-xeon-r-processor.json", tmp_path)
    figs = C.figures(cfg)
    assert figs.source == str(tmp_path / "intel-r-xeon-r-processor.json")
    assert figs.s_per_epoch["resnet18"] > 1000                     # a CPU: hours per ResNet-18 epoch
