"""What each job asks a cluster scheduler for, from the job's own spec.

The rules' ``resources`` (workflow/rules/*.smk) come from here, and
workflow/profiles/slurm turns them into sbatch options (``gpu`` -> ``--gpus``,
``cpus_per_task`` -> ``--cpus-per-task``, ``mem_mb`` -> ``--mem``, ``runtime`` ->
``--time``). The config's ``cluster`` section sets the few policy knobs; nothing
here changes what a job computes, so changing it re-runs nothing.

- ``gpu``: ``cluster.gpus`` for the jobs that run models (``auto``: 1 when the
  config's device is cuda, or auto on a host with CUDA, else 0), so a CPU run
  asks for no GPU. A login node without GPUs submitting to GPU nodes: set 1.
- ``cpus_per_task``: the config's ``threads``, what the job passes to ``--threads``.
- ``mem_mb``: :data:`BASE_MB` (Python, PyTorch, a CUDA context) plus
  :data:`DATA_COPIES` copies of the dataset's uint8 images (the npz as read,
  the tensors built from it), rounded up to 500 MB; or ``cluster.mem_mb``.
- ``runtime`` (minutes): the cost model of ``python -m soften plan``
  (soften.tools.plan: per-epoch training cost, per-attack evaluation cost) times
  ``cluster.runtime_margin``, at least ``cluster.min_runtime``, at most
  ``cluster.max_runtime``. GPU jobs are costed with the benchmark of this host's
  GPU, else plan's reference GPU; CPU jobs with this host's CPU benchmark
  (benchmarks/results/<cpu>.json) when there is one.

A training run longer than ``max_runtime`` runs as several jobs ("segments"):
each stops before its limit with ``last.pt`` saved (soften.training.walltime) and
the next resumes from it. The train rule's ``retries`` is the planned segments
less one plus ``cluster.retries``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from soften.pipeline import jobs as J
from soften.pipeline import layout as L
from soften.tools import plan
from soften.pipeline.config import resolve_transfer
from soften.devices import cpu_name, device_slug, host_has_cuda

#: Host memory of a model job before data: the interpreter, PyTorch and a CUDA context.
BASE_MB = 2000
#: Copies of the dataset's uint8 images a job holds at its peak (the npz arrays, the tensors).
DATA_COPIES = 3
BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def gpus(cfg: dict[str, Any]) -> int:
    """GPUs per model job."""
    want = cfg["cluster"]["gpus"]
    if want != "auto":
        return int(want)
    device = cfg["device"]
    return 1 if device.startswith("cuda") or (device == "auto" and host_has_cuda()) else 0


def figures(cfg: dict[str, Any]) -> plan.Figures:
    """The per-epoch and per-attack figures jobs are costed with (see the module docstring).
    Without a GPU here, torch is not imported: seconds for every Snakemake start and job."""
    if gpus(cfg):
        return plan.load_figures(results_dir=BENCH_DIR) if host_has_cuda() else plan.reference()
    # The file name soften.tools.bench.slug gives this CPU's benchmark (bench imports torch).
    cpu = BENCH_DIR / f"{device_slug(cpu_name())}.json"
    return plan.load_figures(bench=cpu) if cpu.is_file() else plan.reference()


def mem_mb(cfg: dict[str, Any], dataset: str) -> int:
    """Host memory of a model job on ``dataset``, in MB."""
    if cfg["cluster"]["mem_mb"]:
        return int(cfg["cluster"]["mem_mb"])
    entry = cfg["datasets"][dataset]
    total, pixels = plan.DATASET_IMAGES.get(entry["source"], (plan.CIFAR_TRAIN, 1.0))
    subset = entry.get("subset") or {}
    images = sum(subset.values()) if subset else total * 1.25  # test and validation besides training
    data_mb = images * pixels * 32 * 32 * 3 / 1e6
    return int(math.ceil((BASE_MB + DATA_COPIES * data_mb) / 500) * 500)


def _key(stage: str, wildcards: dict[str, Any]) -> tuple:
    return stage, tuple(sorted((k, str(v)) for k, v in wildcards.items()))


def _hours(cfg: dict[str, Any], job: J.Job, figs: plan.Figures, eval_hours: dict[str, float]) -> float:
    if job.stage == "train":
        w = job.wildcards
        return plan.train_hours(cfg, L.Run(w["dataset"], w["noise"], w["arch"], w["method"], int(w["seed"])), figs)
    if job.stage == "craft_transfer":
        w = job.wildcards
        run, _ = L.transfer_source(cfg, w["dataset"], w["source"])
        spec = resolve_transfer(cfg, w["dataset"], w["source"], w["attack"])
        return plan.attack_hours(cfg, run, spec["params"], cfg["transfer"]["n_examples"], figs)
    return sum(eval_hours.get(f, 0.0) for f in job.outputs())


#: id(config) -> (config, {job key: hours}): the Snakefile asks once per job, the config is one.
_TABLES: dict[int, tuple[dict[str, Any], dict[tuple, float]]] = {}


def estimated_hours(cfg: dict[str, Any], stage: str, wildcards: dict[str, Any]) -> float:
    """The cost model's hours for one job (0 for a job it does not cost)."""
    if _TABLES.get(id(cfg), (None,))[0] is not cfg:
        figs = figures(cfg)
        eval_hours = {path: h for name in cfg["experiments"] for _, path, h in plan.evaluation_jobs(cfg, name, figs)}
        _TABLES[id(cfg)] = (cfg, {_key(j.stage, j.wildcards): _hours(cfg, j, figs, eval_hours)
                                  for j in J.all_jobs(cfg) if j.stage in J.PLACED})
    return _TABLES[id(cfg)][1].get(_key(stage, wildcards), 0.0)


def needed_minutes(cfg: dict[str, Any], stage: str, wildcards: dict[str, Any]) -> int:
    """The estimate with its margin, at least ``min_runtime``: what the whole job needs."""
    c = cfg["cluster"]
    return max(c["min_runtime"], math.ceil(estimated_hours(cfg, stage, wildcards) * 60 * c["runtime_margin"]))


def runtime(cfg: dict[str, Any], stage: str, wildcards: dict[str, Any]) -> int:
    """Minutes one job asks for: :func:`needed_minutes`, at most ``max_runtime``."""
    limit = cfg["cluster"]["max_runtime"]
    need = needed_minutes(cfg, stage, wildcards)
    return min(need, limit) if limit else need


def resources(cfg: dict[str, Any], stage: str, wildcards: dict[str, Any]) -> dict[str, int]:
    """Every resource a model job asks for."""
    return {"gpu": gpus(cfg), "cpus_per_task": int(cfg["threads"]), "mem_mb": mem_mb(cfg, wildcards["dataset"]),
            "runtime": runtime(cfg, stage, wildcards)}


def train_retries(cfg: dict[str, Any], environ: dict[str, str] | None = None) -> int:
    """Resubmissions the train rule allows: its longest run's segments less one, plus ``cluster.retries``.
    0 inside a SLURM job (the executor's job step parses the workflow too): rerunning a
    job stopped at the wall time within the same allocation cannot gain time."""
    if "SLURM_JOB_ID" in (os.environ if environ is None else environ):
        return 0
    limit = cfg["cluster"]["max_runtime"]
    segments = 1
    if limit:
        runs = [j.wildcards for j in J.all_jobs(cfg) if j.stage == "train"]
        segments = max([math.ceil(needed_minutes(cfg, "train", w) / limit) for w in runs] or [1])
    return segments - 1 + cfg["cluster"]["retries"]
