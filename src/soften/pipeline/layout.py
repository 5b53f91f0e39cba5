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
- **checkpoints** are ``best`` (chosen on validation), ``final``, and, where the
  config's ``training.select_on`` includes ``test``, ``best_test`` (chosen on the
  whole test set, as the papers' code did; named with ``_`` so that a checkpoint
  never reads as a prefix of another in ``<ckpt>-<attack>`` file names).

Every function takes an already validated config (``soften.pipeline.config``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from soften.io import sidecar_path
from soften.data.noise import NOISE_REGEX

#: What an experiment measures, and so which stage feeds its table.
EXPERIMENT_KINDS = ("accuracy", "transfer", "calibration", "sanity", "noise-gap")
CHECKPOINTS = ("best", "best_test", "final")
#: Attack kinds always evaluated one job per (run, checkpoint, attack): they cost
#: minutes to hours each at paper scale, so adding another attack must not re-run them.
OWN_JOB_KINDS = ("autoattack", "square")

#: A run's label and directory under ``results_dir``, as a Snakemake wildcard pattern.
RUN_PATTERN = "{dataset}/{noise}/{arch}/{method}/seed{seed}"

#: The grammar of every name that becomes a path component (and so a Snakemake
#: wildcard): the workflow's wildcard constraints and the config's name checks.
NAME_PATTERNS: dict[str, str] = {
    "dataset": r"[A-Za-z0-9_-]+",
    "noise": NOISE_REGEX,
    "arch": r"[A-Za-z0-9_-]+",
    "method": r"[A-Za-z0-9.+_-]+",  # a method (pgd-at+sglr) or a variant name
    "seed": r"[0-9]+",
    "ckpt": "|".join(CHECKPOINTS),
    "attack": r"[A-Za-z0-9_-]+",
    "source": r"[A-Za-z0-9_-]+",
    "experiment": r"[A-Za-z0-9_-]+",
}


def valid_name(kind: str, name: str) -> bool:
    """Whether ``name`` may stand in the path slot ``kind`` (a key of :data:`NAME_PATTERNS`)."""
    return re.fullmatch(NAME_PATTERNS[kind], str(name)) is not None


@dataclass(frozen=True, order=True)
class Run:
    """One training run. With strings like ``"{dataset}"`` in its fields it is the
    run *pattern* the Snakemake rules use."""

    dataset: str
    noise: str
    arch: str
    method: str  # a method name or a variant name
    seed: int

    def fields(self) -> dict[str, Any]:
        """The five fields as a dict (seed an int)."""
        return asdict(self)

    def wildcards(self) -> dict[str, str]:
        """The five fields as strings, as Snakemake wildcards are."""
        return {k: str(v) for k, v in asdict(self).items()}

    @property
    def label(self) -> str:
        """``dataset/noise/arch/method/seedK``: the run's name in messages and on the
        command line (``show-config --run``), and its directory under ``results_dir``."""
        return RUN_PATTERN.format(**self.wildcards())


def parse_run(label: str) -> Run:
    """:attr:`Run.label` back to a :class:`Run`; ValueError naming the expected form."""
    parts = label.strip("/").split("/")
    if len(parts) != 5 or not re.fullmatch(r"seed[0-9]+", parts[4]):
        raise ValueError(f"a run is DATASET/NOISE/ARCH/METHOD/seedK, got {label!r}")
    return Run(parts[0], parts[1], parts[2], parts[3], int(parts[4][4:]))


# ------------------------------------------------------------------ paths

def dataset_path(cfg: dict[str, Any], dataset: str) -> str:
    """The fetched dataset (npz: uint8 NHWC images, int64 labels, per-channel mean/std)."""
    return f"{cfg['resources_dir']}/datasets/{dataset}.npz"


def dataset_meta_path(cfg: dict[str, Any], dataset: str) -> str:
    """The fetched dataset's description (JSON sidecar: source, sha256, splits, class names)."""
    return sidecar_path(dataset_path(cfg, dataset))


def noise_path(cfg: dict[str, Any], dataset: str, noise: str) -> str:
    """The noisy training labels of ``dataset`` under ``noise`` (npz)."""
    return f"{cfg['resources_dir']}/noise/{dataset}/{noise}.npz"


def noise_meta_path(cfg: dict[str, Any], dataset: str, noise: str) -> str:
    """What the noise draw did (JSON sidecar: kind, rate, seed, realised rate)."""
    return sidecar_path(noise_path(cfg, dataset, noise))


def run_dir(cfg: dict[str, Any], run: Run) -> str:
    """A run's directory: its checkpoints, history and every evaluation of it."""
    return f"{cfg['results_dir']}/{run.label}"


def checkpoint_path(cfg: dict[str, Any], run: Run, ckpt: str) -> str:
    """``best.pt`` (chosen on validation), ``best_test.pt`` (on the test set) or ``final.pt`` (last epoch) of a run."""
    return f"{run_dir(cfg, run)}/{ckpt}.pt"


def checkpoint_in(run_directory: str | Path, ckpt: str) -> Path:
    """A checkpoint of the run in ``run_directory`` (a path a user gives, not a config's)."""
    return Path(run_directory) / f"{ckpt}.pt"


def evaluations_in(run_directory: str | Path, ckpt: str) -> list[Path]:
    """Every evaluation JSON of one checkpoint of the run in ``run_directory``, by attack name."""
    return sorted((Path(run_directory) / "eval").glob(f"{ckpt}-*.json"))


def history_path(cfg: dict[str, Any], run: Run) -> str:
    """A run's per-epoch history (CSV: loss, accuracies as fractions in [0, 1], lr)."""
    return f"{run_dir(cfg, run)}/history.csv"


def eval_path(cfg: dict[str, Any], run: Run, ckpt: str, attack: str) -> str:
    """One attack's result on one checkpoint (JSON: accuracy in [0, 1], n, per-example mask)."""
    return f"{run_dir(cfg, run)}/eval/{ckpt}-{attack}.json"


def calibration_path(cfg: dict[str, Any], run: Run, ckpt: str) -> str:
    """A checkpoint's calibration result (JSON: ECE per input kind, reliability bins)."""
    return f"{run_dir(cfg, run)}/calibration/{ckpt}.json"


def sanity_path(cfg: dict[str, Any], run: Run, ckpt: str) -> str:
    """A checkpoint's gradient-masking checks (JSON: accuracy vs eps and vs steps)."""
    return f"{run_dir(cfg, run)}/sanity/{ckpt}.json"


def transfer_set_path(cfg: dict[str, Any], dataset: str, source: str, attack: str) -> str:
    """Adversarial test examples crafted on a transfer source (.pt: x_adv in [0, 1], y, meta)."""
    return f"{cfg['results_dir']}/{dataset}/transfer/{source}/{attack}.pt"


def transfer_eval_path(cfg: dict[str, Any], run: Run, ckpt: str, source: str, attack: str) -> str:
    """A target checkpoint's accuracy on one transfer set (JSON)."""
    return f"{run_dir(cfg, run)}/transfer/{source}/{ckpt}-{attack}.json"


def table_paths(cfg: dict[str, Any], experiment: str) -> dict[str, str]:
    """An experiment's table in its three formats: ``md``, ``csv`` and ``tex`` -> path."""
    base = f"{cfg['results_dir']}/tables/{experiment}"
    # .html: the .md rendered, so that the Snakemake report shows the table inline.
    return {"md": f"{base}.md", "csv": f"{base}.csv", "tex": f"{base}.tex", "html": f"{base}.html"}


def verdict_paths(cfg: dict[str, Any]) -> dict[str, str]:
    """The results directory's verdict page: ``md``, ``json`` and ``html`` (the .md rendered, for the report) -> path."""
    base = f"{cfg['results_dir']}/verdict"
    return {"md": f"{base}.md", "json": f"{base}.json", "html": f"{base}.html"}


def verdict_inputs(cfg: dict[str, Any]) -> list[str]:
    """What the verdict is made from: every experiment's table .csv, in config order."""
    return [table_paths(cfg, name)["csv"] for name in cfg["experiments"]]


def figure_path(cfg: dict[str, Any], experiment: str) -> str:
    """An experiment's figure (PNG)."""
    return f"{cfg['results_dir']}/figures/{experiment}.png"


def log_path(cfg: dict[str, Any], stage: str, name: str) -> str:
    """The log of the ``stage`` job called ``name`` (its stdout and stderr)."""
    return f"{cfg['results_dir']}/logs/{stage}/{name}.log"


def run_log_path(cfg: dict[str, Any], stage: str, run: Run, *parts: str) -> str:
    """The log of a per-run job; ``parts`` (checkpoint, attack) name one of several per run."""
    return log_path(cfg, stage, "-".join([run.label, *parts]))


# ------------------------------------------------------------------ the grid

def train_checkpoints(cfg: dict[str, Any]) -> list[str]:
    """The checkpoints every train job writes: best and final, and best_test where the
    config selects on the test set too (``training.select_on``)."""
    select_on = (cfg.get("training") or {}).get("select_on", ["validation"])
    return [c for c in CHECKPOINTS if c != "best_test" or "test" in select_on]


def experiment_runs(cfg: dict[str, Any], name: str) -> list[Run]:
    """The runs of one experiment, in grid order (dataset, noise, arch, method, seed)."""
    exp = cfg["experiments"][name]
    return [Run(d, n, a, m, int(s)) for d in exp["datasets"] for n in exp["noise"] for a in exp["archs"]
            for m in exp["methods"] for s in exp["seeds"]]


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def grid_runs(cfg: dict[str, Any]) -> list[Run]:
    """Every run some experiment shows (teachers and transfer sources come on top, see soften.pipeline.config)."""
    return _unique(r for name in cfg["experiments"] for r in experiment_runs(cfg, name))


def experiments_of_kind(cfg: dict[str, Any], kind: str) -> list[str]:
    """Names of the experiments of ``kind`` (a key of :data:`EXPERIMENT_KINDS`), in config order."""
    return [name for name, exp in cfg["experiments"].items() if exp["kind"] == kind]


def attack_kind(cfg: dict[str, Any], attack: str) -> str:
    """The kind (natural, pgd, cw, autoattack, square) of evaluation attack ``attack``."""
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
    """The attacks that have ``evaluate_attack`` jobs somewhere (see :func:`own_job_evaluations`)."""
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


def figure_attack(cfg: dict[str, Any], name: str) -> str | None:
    """The attack of an accuracy experiment's Best-vs-Final bars: its first attack other than natural."""
    exp = cfg["experiments"][name]
    if exp["kind"] != "accuracy":
        return None
    return next((a for a in exp["attacks"] if attack_kind(cfg, a) != "natural"), None)


def figure_inputs(cfg: dict[str, Any], name: str) -> list[str]:
    """What an experiment's figure is drawn from: reliability data, sanity sweeps, transfer
    evaluations, or learning curves (history.csv), with the evaluations of :func:`figure_attack`
    for accuracy experiments."""
    exp = cfg["experiments"][name]
    if exp["kind"] in ("calibration", "sanity", "transfer"):
        return experiment_inputs(cfg, name)
    runs = experiment_runs(cfg, name)
    attack = figure_attack(cfg, name)
    bars = [eval_path(cfg, r, c, attack) for r in runs for c in exp["checkpoints"]] if attack else []
    return [history_path(cfg, r) for r in runs] + bars


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
    """The runs transfer sets are crafted on (trained like any other run)."""
    return _unique(transfer_source(cfg, d, s)[0] for d, s, _ in transfer_sets(cfg))


def variant(cfg: dict[str, Any], name: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """A run's method slot -> (the method it trains, the hyperparameters its variant sets)."""
    entry = (cfg.get("variants") or {}).get(name)
    if entry is None:
        return name, {}
    return entry["method"], {comp: dict(params or {}) for comp, params in (entry.get("params") or {}).items()}
