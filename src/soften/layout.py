"""Where every artifact lives, and which runs and evaluations each experiment needs.

The one owner of the run layout and of the experiment grid. The Snakefile, the
DVC pipeline, the tables, the figures and the CLI ask this module; nobody else
spells a path or parses one back into fields.

Vocabulary:

- a **run** is one training run, ``(dataset, noise, arch, method, seed)``; its
  ``method`` slot holds a method name (``pgd-at+sglr``) or the name of a
  variant from the config's ``variants:`` section (``sglr-r0.4-T2``);
- an **experiment** is one named entry of ``experiments:``, usually one table
  of a paper: a grid of runs plus what is measured on them (``kind``);
- **checkpoints** are ``best`` (chosen on validation) and ``final``.

Every function takes an already validated config (``soften.config``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

#: What an experiment measures, and so which stage feeds its table.
EXPERIMENT_KINDS = ("accuracy", "transfer", "calibration", "sanity", "noise-gap")
CHECKPOINTS = ("best", "final")
#: Attack kinds always evaluated one job per (run, checkpoint, attack): they cost
#: minutes to hours each at paper scale, so adding another attack must not re-run them.
OWN_JOB_KINDS = ("autoattack", "square")


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    noise: str
    arch: str
    method: str  # a method name or a variant name
    seed: int

    def fields(self) -> dict[str, Any]:
        return asdict(self)

    def wildcards(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


# ------------------------------------------------------------------ paths

def dataset_path(cfg: dict[str, Any], dataset: str) -> str:
    return f"{cfg['resources_dir']}/datasets/{dataset}.npz"


def noise_path(cfg: dict[str, Any], dataset: str, noise: str) -> str:
    return f"{cfg['resources_dir']}/noise/{dataset}/{noise}.npz"


#: The run directory as a Snakemake wildcard pattern; :func:`run_dir` fills it.
RUN_PATTERN = "{dataset}/{noise}/{arch}/{method}/seed{seed}"


def run_dir(cfg: dict[str, Any], run: Run) -> str:
    return f"{cfg['results_dir']}/" + RUN_PATTERN.format(**run.wildcards())


def checkpoint_path(cfg: dict[str, Any], run: Run, ckpt: str) -> str:
    return f"{run_dir(cfg, run)}/{ckpt}.pt"


def checkpoint_in(run_directory: str | Path, ckpt: str) -> Path:
    """A checkpoint of the run in ``run_directory`` (a path a user gives, not a config's)."""
    return Path(run_directory) / f"{ckpt}.pt"


def evaluations_in(run_directory: str | Path, ckpt: str) -> list[Path]:
    """Every evaluation JSON of one checkpoint of the run in ``run_directory``, by attack name."""
    return sorted((Path(run_directory) / "eval").glob(f"{ckpt}-*.json"))


def tracking_dir(run_directory: str | Path) -> Path:
    """Where a run's TensorBoard event files go (``tracking: tensorboard``)."""
    return Path(run_directory) / "tensorboard"


def history_path(cfg: dict[str, Any], run: Run) -> str:
    return f"{run_dir(cfg, run)}/history.csv"


def eval_path(cfg: dict[str, Any], run: Run, ckpt: str, attack: str) -> str:
    return f"{run_dir(cfg, run)}/eval/{ckpt}-{attack}.json"


def calibration_path(cfg: dict[str, Any], run: Run, ckpt: str) -> str:
    return f"{run_dir(cfg, run)}/calibration/{ckpt}.json"


def sanity_path(cfg: dict[str, Any], run: Run, ckpt: str) -> str:
    return f"{run_dir(cfg, run)}/sanity/{ckpt}.json"


def transfer_set_path(cfg: dict[str, Any], dataset: str, source: str, attack: str) -> str:
    return f"{cfg['results_dir']}/{dataset}/transfer/{source}/{attack}.pt"


def transfer_eval_path(cfg: dict[str, Any], run: Run, ckpt: str, source: str, attack: str) -> str:
    return f"{run_dir(cfg, run)}/transfer/{source}/{ckpt}-{attack}.json"


def table_paths(cfg: dict[str, Any], experiment: str) -> dict[str, str]:
    base = f"{cfg['results_dir']}/tables/{experiment}"
    # .html: the .md rendered, so that the Snakemake report shows the table inline.
    return {"md": f"{base}.md", "csv": f"{base}.csv", "tex": f"{base}.tex", "html": f"{base}.html"}


def figure_path(cfg: dict[str, Any], experiment: str) -> str:
    return f"{cfg['results_dir']}/figures/{experiment}.png"


def log_path(cfg: dict[str, Any], stage: str, name: str) -> str:
    return f"{cfg['results_dir']}/logs/{stage}/{name}.log"


# ------------------------------------------------------------------ the grid

def experiment_runs(cfg: dict[str, Any], name: str) -> list[Run]:
    """The runs of one experiment, in grid order (dataset, noise, arch, method, seed)."""
    exp = cfg["experiments"][name]
    return [Run(d, n, a, m, int(s)) for d in exp["datasets"] for n in exp["noise"] for a in exp["archs"]
            for m in exp["methods"] for s in exp["seeds"]]


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def grid_runs(cfg: dict[str, Any]) -> list[Run]:
    """Every run some experiment shows (teachers and transfer sources come on top, see soften.config)."""
    return _unique(r for name in cfg["experiments"] for r in experiment_runs(cfg, name))


def experiments_of_kind(cfg: dict[str, Any], kind: str) -> list[str]:
    return [name for name, exp in cfg["experiments"].items() if exp["kind"] == kind]


def attack_kind(cfg: dict[str, Any], attack: str) -> str:
    return cfg["evaluation"]["attacks"][attack]["kind"]


def kind_runs(cfg: dict[str, Any], kind: str) -> list[Run]:
    """Runs that experiments of ``kind`` cover."""
    return _unique(r for name in experiments_of_kind(cfg, kind) for r in experiment_runs(cfg, name))


def kind_checkpoints(cfg: dict[str, Any], kind: str) -> list[str]:
    """Checkpoints that experiments of ``kind`` use. A per-run job (evaluate, calibrate,
    sanity, evaluate_transfer) covers all of them for each of its runs: one process, one
    dataset load; a checkpoint only another experiment needed costs forward passes only."""
    used = {c for name in experiments_of_kind(cfg, kind) for c in cfg["experiments"][name]["checkpoints"]}
    return [c for c in CHECKPOINTS if c in used]


def batched_attacks(cfg: dict[str, Any]) -> list[str]:
    """Attacks the per-run ``evaluate`` job runs together: the cheap ones (natural, PGD,
    CW) that *every* run of the accuracy experiments needs. Anything narrower gets its
    own jobs, so no attack runs on a run where no experiment asks for it."""
    needs: dict[Run, list[str]] = {}
    for name in experiments_of_kind(cfg, "accuracy"):
        for r in experiment_runs(cfg, name):
            needs.setdefault(r, [])
            needs[r] += [a for a in cfg["experiments"][name]["attacks"] if a not in needs[r]]
    lists = list(needs.values())
    if not lists:
        return []
    return [a for a in lists[0] if attack_kind(cfg, a) not in OWN_JOB_KINDS and all(a in other for other in lists)]


def own_job_evaluations(cfg: dict[str, Any]) -> list[tuple[Run, str, str]]:
    """(run, checkpoint, attack) for the other attacks (AutoAttack, Square, and any attack
    only some experiments use): one ``evaluate_attack`` job each, exactly where asked."""
    batched = set(batched_attacks(cfg))
    return _unique((r, c, a) for name in experiments_of_kind(cfg, "accuracy")
                   for a in cfg["experiments"][name]["attacks"] if a not in batched
                   for r in experiment_runs(cfg, name) for c in cfg["experiments"][name]["checkpoints"])


def own_job_attacks(cfg: dict[str, Any]) -> list[str]:
    return _unique(a for _, _, a in own_job_evaluations(cfg))


def transfer_pairs(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, attack) pairs the per-run ``evaluate_transfer`` job evaluates."""
    return _unique((s, a) for name in experiments_of_kind(cfg, "transfer")
                   for s in cfg["experiments"][name]["sources"] for a in cfg["experiments"][name]["attacks"])


def experiment_inputs(cfg: dict[str, Any], name: str) -> list[str]:
    """Every file the table of experiment ``name`` is made from."""
    exp = cfg["experiments"][name]
    runs, ckpts = experiment_runs(cfg, name), exp["checkpoints"]
    kind = exp["kind"]
    if kind == "accuracy":
        return [eval_path(cfg, r, c, a) for r in runs for c in ckpts for a in exp["attacks"]]
    if kind == "transfer":
        return [transfer_eval_path(cfg, r, c, s, a) for r in runs for c in ckpts for s in exp["sources"]
                for a in exp["attacks"]]
    if kind == "calibration":
        return [calibration_path(cfg, r, c) for r in runs for c in ckpts]
    if kind == "sanity":
        return [sanity_path(cfg, r, c) for r in runs for c in ckpts]
    if kind == "noise-gap":
        return [history_path(cfg, r) for r in runs]
    raise ValueError(f"unknown experiment kind {kind!r}")


def figure_inputs(cfg: dict[str, Any], name: str) -> list[str]:
    """What an experiment's figure is drawn from: reliability data, sanity sweeps, or learning curves."""
    kind = cfg["experiments"][name]["kind"]
    if kind in ("calibration", "sanity"):
        return experiment_inputs(cfg, name)
    return [history_path(cfg, r) for r in experiment_runs(cfg, name)]


def transfer_sets(cfg: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(dataset, source, attack) of every transfer set some target reads; each is crafted once."""
    return _unique((r.dataset, s, a) for name in experiments_of_kind(cfg, "transfer")
                   for r in experiment_runs(cfg, name) for s in cfg["experiments"][name]["sources"]
                   for a in cfg["experiments"][name]["attacks"])


def transfer_source(cfg: dict[str, Any], dataset: str, source: str) -> tuple[Run, str]:
    """The run and checkpoint a transfer set is crafted on."""
    src = cfg["transfer"]["sources"][source]
    return Run(dataset, src["noise"], src["arch"], src["method"], int(src["seed"])), src["checkpoint"]


def source_runs(cfg: dict[str, Any]) -> list[Run]:
    return _unique(transfer_source(cfg, d, s)[0] for d, s, _ in transfer_sets(cfg))


def variant(cfg: dict[str, Any], name: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """A run's method slot -> (the method it trains, the hyperparameters its variant sets)."""
    entry = (cfg.get("variants") or {}).get(name)
    if entry is None:
        return name, {}
    return entry["method"], {comp: dict(params or {}) for comp, params in (entry.get("params") or {}).items()}
