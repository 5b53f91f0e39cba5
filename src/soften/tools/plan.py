"""``python -m soften plan``: the bill of an experiment file before it runs.

For every experiment (and for the whole file) it counts the training runs the
experiment needs (its grid, plus the teachers of distillation methods and, for
transfer experiments, the source runs: soften.pipeline.config.required_runs), which of
them already exist (``final.pt`` present; paths from soften.pipeline.layout), and the
GPU-hours still to spend: training the missing runs plus the evaluations whose
result files are missing.

The cost model (docs/performance.md shows it worked through):

- one PGD-AT epoch of ResNet-18 on CIFAR-10 (50,000 images, PGD-10, training only):
  ``s_per_epoch`` of the benchmark JSON of the GPU at hand
  (benchmarks/results/<gpu>.json, written by ``python -m soften bench``), else the
  reference figure :data:`REFERENCE` (ADR Tab. 6, an RTX A6000: an assumption,
  labelled so in the output);
- architecture: measured in the JSON (PreActResNet-18, ResNet-18, WRN-34-10),
  else :data:`ARCH_FACTORS` (forward FLOPs relative to ResNet-18; WRN-34-10 ~7x);
- dataset: training images (:data:`DATASET_IMAGES`, less the config's
  ``val_size``) and pixels relative to 32x32 (TinyImageNet 64x64: 4x);
  epochs from the resolved run spec (so TinyImageNet's 80);
- method: the measured step-time ratio over PGD-AT where the JSON has it, else
  a sum of per-component costs in forward-pass units (:data:`COMPONENT_COST`):
  a PGD-10 step is 10 x (forward + input-backward) + forward + backward = 23 units;
- per-epoch monitoring (clean + PGD on 3 x 1,000 images; clean only for standard
  training; plus PGD on the whole test set where ``training.select_on`` keeps
  best_test.pt), and the evaluation stages, in the same units (every checkpoint an
  experiment lists, best_test included), AutoAttack from the benchmark's measured
  minutes (or :data:`AA_UNITS`), torchattacks' version scaled by its units.

Every cost is given twice: training in fp32 (the papers' numerics and the paper
files' ``amp: off``) and in bf16 (``amp: bf16``): the training steps scaled by the
benchmark's measured bf16/fp32 step-time ratio, else by :data:`BF16_ASSUMED_RATIO`
(an assumption, labelled so); monitoring and evaluation run in fp32 either way.

All figures are estimates for planning; a run's real cost depends on the GPU's
load, data loading and the number of jobs sharing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soften.devices import device_slug
from soften.pipeline import layout

RESULTS_DIR = Path("benchmarks/results")
CIFAR_TRAIN = 50_000
UNITS_PGD_STEP = 23  # forward-pass units per image of one PGD-10 training step (see module docstring)

#: The stated reference when no benchmark of the GPU at hand exists. ADR Tab. 6
#: ("training cost", RTX A6000): PGD-AT ResNet-18 CIFAR-10 81 s/epoch, +ADR 83 s,
#: +AWP 92 s. An assumption about another machine, printed as such.
REFERENCE: dict[str, Any] = {
    "label": "reference: RTX A6000, ADR Tab. 6 (PGD-AT ResNet-18 CIFAR-10 81 s/epoch, the ADR code: fp32) - "
             "an assumption, not measured here",
    "s_per_epoch": {"resnet18": 81.0},
    "method_ratio": {"pgd-at+adr": 83.0 / 81.0, "pgd-at+awp": 92.0 / 81.0},
    "monitor_s_per_epoch": None,        # from the unit model
    "aa_minutes_10k": None,             # from the unit model
}
#: bf16 autocast's training-step time relative to fp32 when no benchmark of the GPU measured
#: it: an assumption (tensor-core GPUs run bf16 convolutions at several times the fp32/TF32
#: rate, but a ResNet-18 step on 32x32 images at batch 128 is partly bound by memory and
#: launch overheads), to be replaced by the benchmark's ratio.
BF16_ASSUMED_RATIO = 0.6
#: Forward FLOPs relative to ResNet-18 on 32x32 inputs (0.56 GFLOPs): ResNet-34 1.16,
#: ResNet-50 1.30, WRN-34-10 6.3 (~7x in wall time on GPUs, the figure used here), small CNNs ~0.
ARCH_FACTORS = {"resnet18": 1.0, "preactresnet18": 1.0, "resnet34": 2.07, "resnet50": 2.32, "wrn34-10": 7.0,
                "cnn": 0.01, "cnn-wide": 0.03}
#: Training images before the validation split, and pixel count relative to 32x32.
DATASET_IMAGES = {"cifar10": (50_000, 1.0), "cifar100": (50_000, 1.0), "svhn": (73_257, 1.0),
                  "tinyimagenet": (100_000, 4.0), "cifar10-mini": (10_000, 1.0), "digits": (1_437, 0.0625)}
#: Extra forward-pass units per image per step, per method component (PGD-10 step = 23).
COMPONENT_COST = {
    "standard": 3 - UNITS_PGD_STEP,  # no attack: forward + backward only
    "pgd-at": 0, "trades": 4,        # TRADES: the natural forward of the attack (no grad) + natural forward/backward
    "hard": 0, "ls": 0,
    "sglr": 1, "sgls": 1, "te": 1,   # one clean forward (0 with TRADES/standard, which compute f(x) anyway)
    "adr": 1,                        # the EMA teacher's forward
    "kd-at": 1, "kd-swa": 2,         # one forward per teacher
    "awp": 3,                        # the ascent step's forward and backward
    "wa": 0, "swa": 1,               # SWA: a BN pass over the training set per epoch (~1 forward per image)
}
#: AutoAttack standard on a typical robust model, in forward units per test image:
#: APGD-CE 100 x 2 on 84% of points, APGD-T 9 x 100 x 2 on 52%, FAB-T 9 x 100 x 3 on 49%,
#: Square 5000 forwards on 49% (survivor fractions: soften.tools.bench.AA_TYPICAL_SURVIVORS).
AA_UNITS = 0.84 * 200 + 0.52 * 1800 + 0.49 * 2700 + 0.49 * 5000
SQUARE_UNITS = 0.49 * 5000
#: Classes per dataset source: torchattacks' AutoAttack targets all other classes.
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "tinyimagenet": 200, "cifar10-mini": 10, "digits": 10}


def aa_torchattacks_units(classes: int) -> float:
    """``version: torchattacks-3.3`` (ADR's robust_eval.py) in the units of :data:`AA_UNITS`:
    10 iterations for APGD-CE, APGD-T and FAB-T, ``classes - 1`` targets, Square 5000 queries,
    on the same survivor fractions."""
    targets = classes - 1
    return 0.84 * 20 + 0.52 * targets * 20 + 0.49 * targets * 30 + 0.49 * 5000
MONITOR_IMAGES = 3000


@dataclass
class Figures:
    label: str
    s_per_epoch: dict[str, float]                 # arch -> PGD-AT s/epoch, 50k CIFAR images
    method_ratio: dict[str, float] = field(default_factory=dict)
    monitor_s_per_epoch: float | None = None      # ResNet-18 (or the bench arch), 3 x 1,000 images
    aa_minutes_10k: float | None = None           # ResNet-18, typical robust model
    source: str | None = None
    monitor_arch: str = "resnet18"
    bf16_ratio: float = BF16_ASSUMED_RATIO        # bf16 / fp32 training-step time
    bf16_label: str = f"bf16 steps assumed {BF16_ASSUMED_RATIO}x fp32 (not measured)"

    def arch_epoch_s(self, arch: str) -> float:
        if arch in self.s_per_epoch:
            return self.s_per_epoch[arch]
        base = self.s_per_epoch.get("resnet18") or next(iter(self.s_per_epoch.values()))
        return base * ARCH_FACTORS.get(arch, 1.0)

    def unit_s(self, arch: str) -> float:
        """Seconds of one forward-pass unit per CIFAR image for ``arch``."""
        return self.arch_epoch_s(arch) / (CIFAR_TRAIN * UNITS_PGD_STEP)


def _from_bench(path: Path) -> Figures:
    try:
        return _figures(json.loads(path.read_text()), path)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"benchmark file {path} is not a soften bench result ({type(err).__name__}: {err}); "
                         "write it again with: python -m soften bench") from None


def _figures(data: dict[str, Any], path: Path) -> Figures:
    rows = data["pgd_at"]
    gpu = data["machine"]["device"].startswith("cuda")
    fp32 = {r["arch"]: r["s_per_epoch"] for r in rows if r["amp"] == "off"}
    # On CUDA the bench's "auto" rows ran the device's default autocast (bf16).
    bf16 = {r["arch"]: r["s_per_epoch"] for r in rows if r["amp"] in (("auto", "bf16") if gpu else ("bf16",))}
    s = {**{r["arch"]: r["s_per_epoch"] for r in rows}, **fp32}
    pairs = [bf16[a] / fp32[a] for a in fp32 if a in bf16]
    ratio, ratio_label = BF16_ASSUMED_RATIO, f"bf16 steps assumed {BF16_ASSUMED_RATIO}x fp32 (not measured)"
    if pairs:
        ratio = pairs[0]
        ratio_label = f"bf16 steps measured {ratio:.2f}x fp32"
    if "wrn" in data:
        wrn = data["wrn"]
        # The bench times WRN-34-10 under the device's default: bf16 on CUDA unless it says otherwise.
        wrn_bf16 = gpu and wrn.get("amp", "auto") in ("auto", "bf16")
        s["wrn34-10"] = wrn["s_per_epoch"] / ratio if wrn_bf16 else wrn["s_per_epoch"]
    ratios = {m: r["ratio"] for m, r in data.get("overheads", {}).get("methods", {}).items()}
    mon = data.get("monitoring")
    aa = data.get("autoattack")
    return Figures(label=f"measured: {data['machine']['device_name']} ({path})", s_per_epoch=s, method_ratio=ratios,
                   monitor_s_per_epoch=mon["s_per_epoch"] if mon else None,
                   aa_minutes_10k=aa["minutes_10k_typical"] if aa else None, source=str(path),
                   monitor_arch=mon["arch"] if mon else "resnet18", bf16_ratio=ratio, bf16_label=ratio_label)


def reference() -> Figures:
    return Figures(label=REFERENCE["label"], s_per_epoch=dict(REFERENCE["s_per_epoch"]),
                   method_ratio=dict(REFERENCE["method_ratio"]))


def load_figures(bench: str | Path | None = None, device_name: str | None = None,
                 results_dir: str | Path = RESULTS_DIR) -> Figures:
    """The figures to cost with: ``bench`` if given; else the JSON of the named GPU or of the
    GPU at hand in ``results_dir``; else :data:`REFERENCE`."""
    if bench:
        path = Path(bench)
        if not path.is_file():
            raise ValueError(f"benchmark file {path} does not exist (write it with: python -m soften bench)")
        return _from_bench(path)
    if device_name is None:
        import torch

        if torch.cuda.is_available():
            device_name = torch.cuda.get_device_name(0)
    if device_name:
        path = Path(results_dir) / f"{device_slug(device_name)}.json"
        if path.is_file():
            return _from_bench(path)
    return reference()


# ------------------------------------------------------------------ costs

def method_factor(method: str, figures: Figures) -> float:
    """A training step of ``method`` relative to a PGD-AT step."""
    from soften.training.methods import parse_method

    if method in figures.method_ratio:
        return figures.method_ratio[method]
    spec = parse_method(method)
    units = UNITS_PGD_STEP + COMPONENT_COST[spec.objective]
    if spec.objective == "trades" and "trades" in figures.method_ratio:
        units = UNITS_PGD_STEP * figures.method_ratio["trades"]
    for comp in (spec.refiner, *spec.extras):
        measured = figures.method_ratio.get(f"pgd-at+{comp}")
        if comp in ("sglr", "sgls", "te") and spec.objective != "pgd-at":
            continue  # TRADES and standard training compute f(x) anyway
        units += (measured - 1) * UNITS_PGD_STEP if measured is not None else COMPONENT_COST[comp]
    return units / UNITS_PGD_STEP


def _images(cfg: dict[str, Any], dataset: str) -> tuple[int, float]:
    entry = cfg["datasets"][dataset]
    total, pixels = DATASET_IMAGES.get(entry["source"], DATASET_IMAGES.get(dataset, (CIFAR_TRAIN, 1.0)))
    train = total - int(entry.get("val_size", 0))
    subset = entry.get("subset") or {}
    return min(train, subset.get("train", train)), pixels


def _monitor_unit_s(arch: str, figures: Figures) -> float:
    """Seconds per image and forward unit of the loop's monitoring (eval mode, fp32)."""
    if figures.monitor_s_per_epoch is None:
        return figures.unit_s(arch)
    measured = figures.monitor_s_per_epoch / (MONITOR_IMAGES * (2 * 10 + 2))  # PGD-10: clean + 10 x 2 + adversarial
    return measured * figures.arch_epoch_s(arch) / figures.arch_epoch_s(figures.monitor_arch)


def train_hours(cfg: dict[str, Any], run: layout.Run, figures: Figures, precision: str = "fp32") -> float:
    """Training plus per-epoch monitoring of one run, in hours, with its training steps
    in ``precision`` (fp32 or bf16; monitoring is fp32 either way)."""
    from soften.pipeline.config import resolve_run

    spec = resolve_run(cfg, run.dataset, run.noise, run.arch, run.method, run.seed)
    tr = spec["training"]
    images, pixels = _images(cfg, run.dataset)
    step = figures.arch_epoch_s(run.arch) / CIFAR_TRAIN * images * pixels * method_factor(spec["base_method"], figures)
    if precision == "bf16":
        step *= figures.bf16_ratio
    val = int(cfg["datasets"][run.dataset].get("val_size", 0))
    if parse_objective(spec["base_method"]) == "standard":  # clean accuracy only, whole test set and as many train images
        monitored, units = val + 2 * 10_000, 1
    else:
        test = tr["test_subset"] or 10_000
        monitored, units = val + test + (tr["test_subset"] or val or 1000), 2 * tr["val_attack_steps"] + 2
        if "test" in tr.get("select_on", []) and (tr["test_subset"] is not None or tr["monitor_every"] > 1):
            monitored += 10_000  # best_test.pt: PGD on the whole test set every epoch (docs/evaluation.md)
    monitor = monitored * units * _monitor_unit_s(run.arch, figures) * pixels
    return tr["epochs"] * (step + monitor) / 3600


def parse_objective(method: str) -> str:
    from soften.training.methods import parse_method

    return parse_method(method).objective


def _attack_units(params: dict[str, Any]) -> float:
    kind = params["kind"]
    if kind == "natural":
        return 1
    if kind in ("pgd", "cw"):
        return 2 * int(params.get("steps", 20)) + 1
    if kind == "square":
        return SQUARE_UNITS
    if kind == "autoattack":
        return AA_UNITS
    return 1


def attack_hours(cfg: dict[str, Any], run: layout.Run, params: dict[str, Any], n: int | None, figures: Figures) -> float:
    _, pixels = _images(cfg, run.dataset)
    n = n or 10_000
    units = _attack_units(params)
    if params["kind"] == "autoattack" and params.get("version") == "torchattacks-3.3":
        source = cfg["datasets"][run.dataset]["source"]
        units = aa_torchattacks_units(DATASET_CLASSES.get(source, DATASET_CLASSES.get(run.dataset, 10)))
    if params["kind"] == "autoattack" and figures.aa_minutes_10k is not None:
        scale = figures.arch_epoch_s(run.arch) / figures.arch_epoch_s("resnet18") * units / AA_UNITS
        return figures.aa_minutes_10k * 60 * scale * pixels * n / 10_000 / 3600
    return n * units * figures.unit_s(run.arch) * pixels / 3600


def evaluation_jobs(cfg: dict[str, Any], name: str, figures: Figures) -> list[tuple[layout.Run, str, float]]:
    """(run, result file, GPU-hours) of every evaluation an experiment's table reads."""
    from soften.pipeline.config import resolve_calibration, resolve_eval, resolve_sanity

    exp = cfg["experiments"][name]
    jobs = []
    for run in layout.experiment_runs(cfg, name):
        for ckpt in exp["checkpoints"]:
            if exp["kind"] == "accuracy":
                for attack in exp["attacks"]:
                    spec = resolve_eval(cfg, run.dataset, attack)
                    jobs.append((run, layout.eval_path(cfg, run, ckpt, attack),
                                 attack_hours(cfg, run, spec["params"], spec["n_examples"], figures)))
            elif exp["kind"] == "calibration":
                spec = resolve_calibration(cfg, run.dataset)
                hours = sum(attack_hours(cfg, run, p, spec["n_examples"], figures) for p in spec["inputs"].values())
                jobs.append((run, layout.calibration_path(cfg, run, ckpt), hours))
            elif exp["kind"] == "sanity":
                spec = resolve_sanity(cfg, run.dataset)
                s = spec["settings"]
                units = 2 * ((len(s["eps_multipliers"]) + 1) * s["eps_steps"] + sum(s["steps"]))
                hours = (spec["n_examples"] or 10_000) * units * figures.unit_s(run.arch) / 3600
                jobs.append((run, layout.sanity_path(cfg, run, ckpt), hours))
            elif exp["kind"] == "transfer":
                for source in exp["sources"]:
                    for attack in exp["attacks"]:
                        jobs.append((run, layout.transfer_eval_path(cfg, run, ckpt, source, attack),
                                     (cfg["transfer"]["n_examples"] or 10_000) * figures.unit_s(run.arch) / 3600))
    return jobs


@dataclass
class ExperimentCost:
    name: str
    runs: int
    new_runs: int
    train_hours: float
    eval_hours: float
    new: list[str] = field(default_factory=list)
    train_hours_bf16: float = 0.0   # the same runs trained with bf16 autocast

    @property
    def hours(self) -> float:
        return self.train_hours + self.eval_hours

    @property
    def hours_bf16(self) -> float:
        return self.train_hours_bf16 + self.eval_hours


def experiment_training_runs(cfg: dict[str, Any], name: str) -> list[layout.Run]:
    """The grid, the teachers its methods distil from, and (transfer) the source runs."""
    from soften.pipeline.config import teacher_chain

    runs = layout.experiment_runs(cfg, name)
    out = list(runs)
    for r in runs:
        out += [layout.Run(r.dataset, r.noise, r.arch, t, r.seed) for t in teacher_chain(cfg, r.dataset, r.method)]
    exp = cfg["experiments"][name]
    if exp["kind"] == "transfer":
        out += [layout.transfer_source(cfg, d, s)[0] for d in exp["datasets"] for s in exp["sources"]]
    return list(dict.fromkeys(out))


def _exists(path: str) -> bool:
    return Path(path).is_file()


def plan(cfg: dict[str, Any], figures: Figures) -> dict[str, Any]:
    """Per experiment and in all: runs, runs still to train, GPU-hours left (training + evaluation)."""
    from soften.pipeline.config import required_runs

    hours_of: dict[tuple[layout.Run, str], float] = {}

    def hours(run, precision="fp32"):
        if (run, precision) not in hours_of:
            hours_of[run, precision] = train_hours(cfg, run, figures, precision)
        return hours_of[run, precision]

    rows, all_evals = [], {}
    for name in cfg["experiments"]:
        runs = experiment_training_runs(cfg, name)
        new = [r for r in runs if not _exists(layout.checkpoint_path(cfg, r, "final"))]
        evals = [(path, h) for _, path, h in evaluation_jobs(cfg, name, figures) if not _exists(path)]
        all_evals.update(evals)
        rows.append(ExperimentCost(name, len(runs), len(new), sum(hours(r) for r in new), sum(h for _, h in evals),
                                   [r.label for r in new], sum(hours(r, "bf16") for r in new)))
    every = required_runs(cfg)
    new = [r for r in every if not _exists(layout.checkpoint_path(cfg, r, "final"))]
    total = ExperimentCost("all (shared runs once)", len(every), len(new), sum(hours(r) for r in new),
                           sum(all_evals.values()), [r.label for r in new], sum(hours(r, "bf16") for r in new))
    return {"figures": figures, "experiments": rows, "total": total, "scale": cfg["scale"]}


def render(estimate: dict[str, Any], wide: bool = False) -> str:
    """A Markdown table: experiment, runs, new runs, GPU-hours (training + evaluation) with
    fp32 training and with bf16 training."""
    figs: Figures = estimate["figures"]
    lines = [f"Costed with {figs.label}; {figs.bf16_label}. Evaluation is fp32 in both columns.", "",
             "| experiment | runs | new runs | GPU-hours left, fp32 (train + eval) | with bf16 training (train + eval) |",
             "|---|---:|---:|---:|---:|"]
    for row in [*estimate["experiments"], estimate["total"]]:
        name = f"**{row.name}**" if row is estimate["total"] else row.name
        lines.append(f"| {name} | {row.runs} | {row.new_runs} | {_h(row.hours)} ({_h(row.train_hours)} + "
                     f"{_h(row.eval_hours)}) | {_h(row.hours_bf16)} ({_h(row.train_hours_bf16)} + {_h(row.eval_hours)}) |")
    if estimate["scale"] == "smoke":
        lines += ["", "Smoke scale: the costs of the smoke runs (a handful of images each), not of the paper-scale runs."]
    if wide and estimate["total"].new:
        lines += ["", "Runs still to train:", *[f"- {r}" for r in estimate["total"].new]]
    return "\n".join(lines) + "\n"


def _h(hours: float) -> str:
    if hours == 0:
        return "0"
    return f"{hours:.1f}" if hours >= 0.1 else f"{hours:.2f}"


