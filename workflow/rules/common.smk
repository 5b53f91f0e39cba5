# The config, and the few helpers the rule files share. Paths and the grid come from
# soften.pipeline.layout; each job's command and params from soften.pipeline.jobs, the same code the
# generated dvc.yaml is made from (python -m soften dvc_pipeline).
import os
import shlex
import sys
from pathlib import Path

# The workflow runs its own source tree: Snakemake imports soften from it here, and
# every job's shell puts it first on PYTHONPATH. So a job runs this checkout's code
# whether it runs in the project's venv, on a cluster node, or in the conda env of
# envs/soften.yaml under `--sdm conda` (which installs the dependencies, not soften:
# Snakemake builds that env from a copy of the file, where no path to the source resolves).
SRC = str(Path(workflow.basedir).parent / "src")
sys.path.insert(0, SRC)
# (Snakemake formats the prefix like a shell command: {{ }} stands for a literal brace.)
shell.prefix(f"set -o pipefail; export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

import soften.pipeline.config as sc
from soften.tools import cluster as C
from soften.pipeline import jobs as J
from soften.pipeline import layout as L
from soften.pipeline.codedeps import code_hash


def _load_config():
    files = [str(p) for p in workflow.config_settings.configfiles]
    if not files:
        files = [str(Path(workflow.basedir).parent / "config" / "config.yaml")]
    try:
        return sc.load_config(files, dict(workflow.config_settings.config))
    except sc.ConfigError as err:
        raise WorkflowError(f"soften: {err}") from None


CFG = _load_config()
config.clear()
config.update(CFG)
EXPERIMENTS = list(CFG["experiments"])


def checkpoint_output(path):
    return path if CFG["keep_checkpoints"] else temp(path)


# What a model job asks a scheduler for (gpu, cpus_per_task, mem_mb, runtime), from
# its own spec and the config's `cluster` section (soften.tools.cluster). Jobs resolve
# `device` themselves; `cluster.gpus` says whether they declare a GPU.
GPU_JOBS = C.gpus(CFG)


def sized(stage):
    """A model rule's resources: each job's own (soften.tools.cluster.resources)."""
    return dict(
        gpu=GPU_JOBS,
        cpus_per_task=CFG["threads"],
        mem_mb=lambda wc: C.mem_mb(CFG, wc.dataset),
        runtime=lambda wc: C.runtime(CFG, stage, dict(wc.items())),
    )


# Jobs read where they run (device, GPU sharing) and whether they report to TensorBoard
# from the environment, not from their command or params: `--config device=cuda` moves
# jobs without rerunning them (remote jobs re-read the Snakefile, so they get it too).
# keep_checkpoints: false (the smoke scale) makes a finished training job drop its
# resume state (soften.pipeline.stages.train reads SOFTEN_KEEP_CHECKPOINTS).
os.environ.update(
    SOFTEN_DEVICE=CFG["device"],
    SOFTEN_GPU_SLOTS=str(CFG["gpu_slots_per_device"]),
    SOFTEN_TRACKING=CFG["tracking"],
    SOFTEN_KEEP_CHECKPOINTS="1" if CFG["keep_checkpoints"] else "0",
)


wildcard_constraints:
    **{**L.NAME_PATTERNS, "experiment": "|".join(EXPERIMENTS)},


#: A run whose fields are the wildcards: rule patterns come from soften.pipeline.layout too.
W = L.Run("{dataset}", "{noise}", "{arch}", "{method}", "{seed}")


def wc_run(wc):
    return L.Run(wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed))


#: Each rule's code: a hash of the soften source files its job imports (soften.pipeline.codedeps).
#: It is a param, so editing a stage's code reruns that stage's jobs and nothing else.
CODE = {stage: code_hash(stage) for stage in J.COMMANDS}

#: Each job's params and input lists, computed once per config (soften.pipeline.jobs.Index): asked
#: per job from the config alone, a grid-wide answer would make planning quadratic in the runs.
IX = J.Index(CFG)


def experiment_outputs(name):
    return [*L.table_paths(CFG, name).values(), L.figure_path(CFG, name)]


# Every rule's software environment: used only with --sdm conda (the default route
# is the project's virtual environment, on PATH). soften itself comes from SRC above.
CONDA_ENV = "../envs/soften.yaml"


def report_category(wc):
    return J.report_category(CFG, wc.experiment)


def report_labels(what):
    return lambda wc: {"experiment": wc.experiment, "kind": CFG["experiments"][wc.experiment]["kind"], "file": what}
