# The config, and the few helpers the rule files share. Paths and the grid come
# from soften.layout; specs from soften.config (the same code the CLI and DVC use).
import json
from pathlib import Path

import soften.config as sc
from soften import layout as L
from soften.devices import PLACEMENT_KEYS
from soften.noise import NOISE_REGEX


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


# Jobs resolve `device` themselves (a login node may have no GPU while compute
# nodes do); this host's view only decides whether jobs declare gpu=1.
def _host_has_cuda():
    # Importing torch costs seconds per Snakemake start; without an NVIDIA device node
    # there is no CUDA to find.
    if not Path("/dev/nvidiactl").exists():
        return False
    import torch

    return torch.cuda.is_available()


GPU_JOBS = 1 if CFG["device"].startswith("cuda") or (CFG["device"] == "auto" and _host_has_cuda()) else 0


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    noise=NOISE_REGEX,
    arch="[A-Za-z0-9_-]+",
    method="[A-Za-z0-9.+_-]+",
    seed="[0-9]+",
    ckpt="best|final",
    attack="[A-Za-z0-9_-]+",
    source="[A-Za-z0-9_-]+",
    experiment="|".join(EXPERIMENTS),


#: A run whose fields are the wildcards: rule patterns come from soften.layout too.
W = L.Run("{dataset}", "{noise}", "{arch}", "{method}", "{seed}")


def wc_run(wc):
    return L.Run(wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed))


def spec_json(spec):
    """A job's spec as a params value. Where a job runs (device, threads) is passed
    outside params, so moving a run to another device re-runs nothing."""
    return json.dumps({k: v for k, v in spec.items() if k not in PLACEMENT_KEYS}, sort_keys=True)


def experiment_outputs(name):
    return [*L.table_paths(CFG, name).values(), L.figure_path(CFG, name)]


# Every rule's software environment: used only with --sdm conda (the default route
# is the project's virtual environment, on PATH).
CONDA_ENV = "../envs/soften.yaml"
