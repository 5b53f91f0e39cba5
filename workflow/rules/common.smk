# Config validation and the helpers every rule file uses.
import json
import re

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
# Jobs resolve `device` themselves (a login node may have no GPU while compute
# nodes do); this host's view only decides whether jobs declare gpu=1.
def _host_has_cuda():
    import torch

    return torch.cuda.is_available()


GPU_JOBS = 1 if config["device"].startswith("cuda") or (config["device"] == "auto" and _host_has_cuda()) else 0


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    noise="none|(symmetric|uniform)-[0-9.]+",
    arch="[A-Za-z0-9_-]+",
    method="[a-z0-9+-]+",
    seed="[0-9]+",
    ckpt="best|final",
    attack="[A-Za-z0-9_-]+",
    source="[A-Za-z0-9_-]+",


def run_dirs():
    return [run for *_, run in runs()]


def fetch_entry(dataset):
    entry = config["datasets"][dataset]
    return {k: entry[k] for k in ("source", "val_size", "val_seed", "options") if k in entry}


def run_spec(wc):
    spec = sc.resolve_run(config, wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed))
    return json.dumps(spec, sort_keys=True)


# Attacks that run on every checkpoint share one evaluate job per checkpoint: a
# job's start-up (importing torch) costs more than a digits attack. Attacks
# narrowed to some runs (e.g. AutoAttack on a subset) get a job each.
ATTACKS = config["evaluation"]["attacks"]
SHARED_ATTACKS = [a for a, e in ATTACKS.items() if not any(k in e for k in ("checkpoints", "seeds", "methods", "noise"))]
OWN_ATTACKS = [a for a in ATTACKS if a not in SHARED_ATTACKS]


def _eval_spec(dataset, attack):
    spec = sc.resolve_eval(config, dataset, attack)
    return spec


def eval_spec(wc):
    return json.dumps(_eval_spec(wc.dataset, wc.attack), sort_keys=True)


def shared_eval_specs(wc):
    return json.dumps([_eval_spec(wc.dataset, a) for a in SHARED_ATTACKS], sort_keys=True)


def runs():
    """(dataset, noise, arch, method, seed, run directory) of every run in the grid."""
    return [
        (d, n, a, m, s, sc.run_dir(config, d, n, a, m, s))
        for d in EXP["datasets"]
        for n in EXP["noise"]
        for a in EXP["archs"]
        for m in EXP["methods"]
        for s in EXP["seeds"]
    ]


def all_evaluations():
    # An attack entry's checkpoints/seeds/methods/noise may narrow where it runs (e.g. AutoAttack).
    return [
        f"{run}/eval/{ckpt}-{attack}.json"
        for _, noise, _, method, seed, run in runs()
        for ckpt in config["evaluation"]["checkpoints"]
        for attack in config["evaluation"]["attacks"]
        if sc.attack_applies(config, attack, ckpt, seed, method=method, noise=noise)
    ]


def transfer_spec(wc):
    spec = sc.resolve_transfer(config, wc.dataset, wc.source, wc.attack)
    return json.dumps(spec, sort_keys=True)


def calibration_spec(wc):
    spec = sc.resolve_calibration(config, wc.dataset)
    return json.dumps(spec, sort_keys=True)


def sanity_spec(wc):
    spec = sc.resolve_sanity(config, wc.dataset)
    return json.dumps(spec, sort_keys=True)


def _selected(section, seed, method, noise):
    """A run is in a section's scope unless its seeds/methods/noise lists leave it out."""
    return all(section.get(key) is None or value in section[key]
               for key, value in (("seeds", int(seed)), ("methods", method), ("noise", noise)))


RUN = f"{RESULTS}/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}"


def transfer_sets(dataset):
    tr = config["transfer"]
    return [f"{RESULTS}/{dataset}/transfer/{s}/{a}.pt" for s in tr["sources"] for a in tr["attacks"]]


def transfer_outputs(run):
    """One JSON per (target checkpoint, source, attack), written by one job per run."""
    tr = config["transfer"]
    return [f"{run}/transfer/{s}/{c}-{a}.json" for c in tr["checkpoints"] for s in tr["sources"] for a in tr["attacks"]]


def all_transfer_evaluations():
    """Every target run x checkpoint x source x transfer attack; each set is crafted once."""
    tr = config["transfer"]
    if not tr["sources"] or not tr["attacks"]:
        return []
    return [f for _, noise, _, method, seed, run in runs() if _selected(tr, seed, method, noise) for f in transfer_outputs(run)]


def transfer_jobs(wc):
    """(target checkpoint, transfer set, output JSON) triples of one evaluate_transfer job."""
    tr = config["transfer"]
    run = sc.run_dir(config, wc.dataset, wc.noise, wc.arch, wc.method, wc.seed)
    return [
        {"checkpoint": f"{run}/{c}.pt", "crafted": f"{RESULTS}/{wc.dataset}/transfer/{s}/{a}.pt",
         "out": f"{run}/transfer/{s}/{c}-{a}.json"}
        for c in tr["checkpoints"] for s in tr["sources"] for a in tr["attacks"]
    ]


def calibration_outputs(run):
    return [f"{run}/calibration/{c}.json" for c in config["calibration"]["checkpoints"]]


def all_calibrations():
    cal = config["calibration"]
    if not cal["enabled"]:
        return []
    return [f for _, noise, _, method, seed, run in runs() if _selected(cal, seed, method, noise) for f in calibration_outputs(run)]


def sanity_outputs(run):
    return [f"{run}/sanity/{c}.json" for c in config["sanity"]["checkpoints"]]


def all_sanity_reports():
    san = config["sanity"]
    if not san["enabled"]:
        return []
    return [f for _, noise, _, method, seed, run in runs() if _selected(san, seed, method, noise) for f in sanity_outputs(run)]


def table_outputs():
    out = {
        "md": f"{RESULTS}/tables/main.md",
        "csv": f"{RESULTS}/tables/main.csv",
        "tex": f"{RESULTS}/tables/main.tex",
        "runs": f"{RESULTS}/tables/runs.csv",
    }
    for name, present in (("transfer", all_transfer_evaluations()), ("calibration", all_calibrations()),
                          ("sanity", all_sanity_reports())):
        if present:
            out[f"{name}_md"] = f"{RESULTS}/tables/{name}.md"
            out[f"{name}_csv"] = f"{RESULTS}/tables/{name}.csv"
    return out


def curve_figures():
    return [
        f"{RESULTS}/figures/curves-{d}-{n}-{a}.png"
        for d in EXP["datasets"]
        for n in EXP["noise"]
        for a in EXP["archs"]
    ]


def teacher_checkpoints(wc):
    spec = sc.resolve_run(config, wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed))
    return [t["checkpoint"] for t in spec.get("teachers", [])]


def reliability_figures():
    cal = config["calibration"]
    if not cal["enabled"]:
        return []
    settings = sorted({(d, n, a, s) for d, n, a, m, s, _ in runs() if _selected(cal, s, m, n)})
    return [
        f"{RESULTS}/figures/reliability-{d}-{n}-{a}-seed{s}-{c}.png"
        for d, n, a, s in settings
        for c in cal["checkpoints"]
    ]
