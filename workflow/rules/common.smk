# Config validation and the helpers every rule file uses.
import json

from snakemake.utils import validate

import soften.config as sc

# Fails before any job starts, naming the offending key; fills schema defaults.
validate(config, "../schemas/config.schema.yaml")
try:
    sc.check_references(config)
except sc.ConfigError as err:
    raise ValueError(str(err)) from None

RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
EXP = config["experiment"]
DEVICE = sc.resolve_device(config["device"])
GPU_JOBS = 1 if DEVICE.startswith("cuda") else 0


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    noise="none|(symmetric|uniform)-[0-9.]+",
    arch="[A-Za-z0-9_-]+",
    method="[a-z0-9+-]+",
    seed="[0-9]+",
    ckpt="best|final",
    attack="[A-Za-z0-9_-]+",


def run_dirs():
    return [
        sc.run_dir(config, d, n, a, m, s)
        for d in EXP["datasets"]
        for n in EXP["noise"]
        for a in EXP["archs"]
        for m in EXP["methods"]
        for s in EXP["seeds"]
    ]


def fetch_entry(dataset):
    entry = config["datasets"][dataset]
    return {k: entry[k] for k in ("source", "val_size", "val_seed", "options") if k in entry}


def run_spec(wc):
    spec = sc.resolve_run(config, wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed))
    spec["device"] = DEVICE
    return json.dumps(spec, sort_keys=True)


def eval_spec(wc):
    spec = sc.resolve_eval(config, wc.dataset, wc.attack)
    spec["device"] = DEVICE
    return json.dumps(spec, sort_keys=True)


def all_evaluations():
    return [
        f"{run}/eval/{ckpt}-{attack}.json"
        for run in run_dirs()
        for ckpt in config["evaluation"]["checkpoints"]
        for attack in config["evaluation"]["attacks"]
    ]
