"""Every job of the pipeline: its command, its parameters, its files.

The one definition of what a job runs. The Snakemake rules (workflow/rules/*.smk)
take their shell commands and params from here and their paths from soften.pipeline.layout;
:func:`all_jobs` lists the same jobs concretely, which is what the generated
``dvc.yaml`` (soften.pipeline.dvc_pipeline) is made of. ``tests/test_dvc_pipeline.py``
checks that the two agree job by job: same inputs, outputs and command.

A command template uses Snakemake's syntax (``{params.spec:q}`` is the value
shell-quoted; a list is quoted item by item and joined by spaces), and
:func:`format_command` fills it the way Snakemake does. Where a job runs and where
its log goes change no result: the device comes from ``SOFTEN_DEVICE`` in both
tools, and Snakemake alone appends the thread count and the log (:data:`PLACEMENT`,
:data:`LOG_HEADER`, :data:`LOG`); a DVC job takes ``SOFTEN_THREADS``.
"""

from __future__ import annotations

import json
import shlex
import string
from dataclasses import dataclass, field
from typing import Any

from soften.pipeline import config as sc
from soften.pipeline import layout as L
from soften.devices import PLACEMENT_KEYS

#: Each stage's command: ``python -m soften STAGE`` (rule name = command = soften.pipeline.stages function).
COMMANDS: dict[str, str] = {
    "fetch": "python -m soften fetch --entry {params.entry:q} --dataset {wildcards.dataset} --out {output.npz:q}",
    "noise": "python -m soften noise --dataset-npz {input.npz:q} --noise {wildcards.noise} --seed {params.seed} "
             "--out {output.npz:q}",
    "train": "python -m soften train --spec {params.spec:q} --out {params.out:q}",
    "evaluate": "python -m soften evaluate --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
                "--spec {params.spec:q} --out {output:q}",
    "evaluate_attack": "python -m soften evaluate_attack --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
                       "--spec {params.spec:q} --out {output:q}",
    "calibrate": "python -m soften calibrate --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
                 "--spec {params.spec:q} --out {output:q}",
    "sanity": "python -m soften sanity --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
              "--spec {params.spec:q} --out {output:q}",
    "craft_transfer": "python -m soften craft_transfer --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
                      "--spec {params.spec:q} --out {output:q}",
    "evaluate_transfer": "python -m soften evaluate_transfer --checkpoint {input.ckpts:q} --crafted {input.crafted:q} "
                         "--out {output:q}",
    "tables": "python -m soften tables {input:q} --spec {params.spec:q} --out {output.md:q}",
    "figures": "python -m soften figures {input:q} --spec {params.spec:q} --out {output:q}",
    "verdict": "python -m soften verdict {input:q} --spec {params.spec:q} --out {output.md:q}",
}
#: Stages that run models, and so take a device and a thread count.
PLACED = ("train", "evaluate", "evaluate_attack", "calibrate", "sanity", "craft_transfer", "evaluate_transfer")
#: How many CPU threads a Snakemake job uses: outside params, so that it reruns nothing.
#: The device comes from the environment (SOFTEN_DEVICE, which the Snakefile sets
#: from the config's ``device``), for the same reason.
PLACEMENT = " --threads {threads}"
#: Snakemake appends each job's output to its log, after a header naming the attempt
#: (time, host, SLURM job): a failed or wall-time-stopped attempt's log stays above the next.
LOG_HEADER = ('echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) (SLURM job ${{SLURM_JOB_ID:-none}})"'
              ' | tee -a {log:q}.attempts >> {log:q}; ')
# Snakemake deletes a failed job's log before it runs the job again, so every attempt also goes
# to ``<log>.attempts``, which no rule declares and Snakemake never deletes (Snakemake's bash
# runs with pipefail, set in workflow/rules/common.smk: the stage's exit status survives the pipe).
LOG = " 2>&1 | tee -a {log:q}.attempts >> {log:q}"


def shell(stage: str) -> str:
    """A rule's shell command: the log's attempt header, the stage's command, its placement
    if it runs models, and its log."""
    return LOG_HEADER + COMMANDS[stage] + (PLACEMENT if stage in PLACED else "") + LOG


# ------------------------------------------------------------------ params (what a job computes)

def spec_json(spec: dict[str, Any] | list[dict[str, Any]]) -> str:
    """A resolved spec as the JSON a job is given, placement keys (device, threads) left out."""
    def strip(s):
        return {k: v for k, v in s.items() if k not in PLACEMENT_KEYS}

    return json.dumps([strip(s) for s in spec] if isinstance(spec, list) else strip(spec), sort_keys=True)


def fetch_entry(cfg: dict[str, Any], dataset: str) -> str:
    """``params.entry`` of ``fetch``: the dataset entry's keys that shape its npz, as JSON."""
    return json.dumps(sc.fetch_entry(cfg, dataset), sort_keys=True)


def run_spec(cfg: dict[str, Any], run: L.Run) -> str:
    """``params.spec`` of ``train``: the run's resolved spec (soften.pipeline.config.resolve_run)."""
    return spec_json(sc.resolve_run(cfg, run.dataset, run.noise, run.arch, run.method, int(run.seed)))


def teacher_checkpoints(cfg: dict[str, Any], run: L.Run) -> list[str]:
    """The ``best.pt`` of each teacher a distillation run (kd-at, kd-swa) loads; [] for others."""
    spec = sc.resolve_run(cfg, run.dataset, run.noise, run.arch, run.method, int(run.seed))
    return [t["checkpoint"] for t in spec.get("teachers", [])]


def eval_specs(cfg: dict[str, Any], dataset: str) -> str:
    """``params.spec`` of ``evaluate``: one spec per batched attack, in :func:`soften.pipeline.layout.batched_attacks` order."""
    return spec_json([sc.resolve_eval(cfg, dataset, a) for a in L.batched_attacks(cfg)])


def attack_spec(cfg: dict[str, Any], dataset: str, attack: str) -> str:
    """``params.spec`` of ``evaluate_attack``."""
    return spec_json(sc.resolve_eval(cfg, dataset, attack))


def calibration_spec(cfg: dict[str, Any], dataset: str) -> str:
    """``params.spec`` of ``calibrate``."""
    return spec_json(sc.resolve_calibration(cfg, dataset))


def sanity_spec(cfg: dict[str, Any], dataset: str) -> str:
    """``params.spec`` of ``sanity``."""
    return spec_json(sc.resolve_sanity(cfg, dataset))


def transfer_spec(cfg: dict[str, Any], dataset: str, source: str, attack: str) -> str:
    """``params.spec`` of ``craft_transfer``."""
    return spec_json(sc.resolve_transfer(cfg, dataset, source, attack))


def table_spec(cfg: dict[str, Any], experiment: str) -> str:
    """``params.spec`` of ``tables`` and ``figures``: what they need to know about the experiment."""
    return json.dumps(sc.table_spec(cfg, experiment), sort_keys=True)


def verdict_spec(cfg: dict[str, Any]) -> str:
    """``params.spec`` of ``verdict``: settings, scale, and each experiment's claims."""
    return json.dumps(sc.verdict_spec(cfg), sort_keys=True)


def source_checkpoint(cfg: dict[str, Any], dataset: str, source: str) -> str:
    """The checkpoint a transfer set of ``source`` on ``dataset`` is crafted on."""
    run, ckpt = L.transfer_source(cfg, dataset, source)
    return L.checkpoint_path(cfg, run, ckpt)


class Index:
    """The params and input lists above, for one config, each computed once per question.

    Snakemake asks a rule's input functions and params once per job. Answered by the
    functions above, an ``evaluate`` job's spec scans every run of the grid
    (:func:`soften.pipeline.layout.batched_attacks`) and a ``train`` job resolves its run twice
    (spec and teachers): planning would grow with the square of the grid. An Index
    answers grid-wide questions once and each per-dataset or per-run one once, so each
    job costs the same however many runs the config has. Its answers are those of the
    functions of the same names (``tests/test_planning.py`` checks it); the config must
    not change after the Index is made.
    """

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.batched = L.batched_attacks(cfg)
        self._answers: dict[tuple, Any] = {}

    def _once(self, key: tuple, compute) -> Any:
        if key not in self._answers:
            self._answers[key] = compute()
        return self._answers[key]

    def _resolved(self, run: L.Run) -> dict[str, Any]:
        return self._once(("run", run), lambda: sc.resolve_run(self.cfg, run.dataset, run.noise, run.arch, run.method,
                                                                int(run.seed)))

    def run_spec(self, run: L.Run) -> str:
        """:func:`run_spec`."""
        return spec_json(self._resolved(run))

    def teacher_checkpoints(self, run: L.Run) -> list[str]:
        """:func:`teacher_checkpoints`."""
        return [t["checkpoint"] for t in self._resolved(run).get("teachers", [])]

    def fetch_entry(self, dataset: str) -> str:
        """:func:`fetch_entry`."""
        return self._once(("fetch", dataset), lambda: fetch_entry(self.cfg, dataset))

    def eval_specs(self, dataset: str) -> str:
        """:func:`eval_specs`."""
        return self._once(("evaluate", dataset),
                          lambda: spec_json([sc.resolve_eval(self.cfg, dataset, a) for a in self.batched]))

    def attack_spec(self, dataset: str, attack: str) -> str:
        """:func:`attack_spec`."""
        return self._once(("evaluate_attack", dataset, attack), lambda: attack_spec(self.cfg, dataset, attack))

    def calibration_spec(self, dataset: str) -> str:
        """:func:`calibration_spec`."""
        return self._once(("calibrate", dataset), lambda: calibration_spec(self.cfg, dataset))

    def sanity_spec(self, dataset: str) -> str:
        """:func:`sanity_spec`."""
        return self._once(("sanity", dataset), lambda: sanity_spec(self.cfg, dataset))

    def transfer_spec(self, dataset: str, source: str, attack: str) -> str:
        """:func:`transfer_spec`."""
        return self._once(("craft_transfer", dataset, source, attack),
                          lambda: transfer_spec(self.cfg, dataset, source, attack))

    def source_checkpoint(self, dataset: str, source: str) -> str:
        """:func:`source_checkpoint`."""
        return self._once(("source", dataset, source), lambda: source_checkpoint(self.cfg, dataset, source))

    def table_spec(self, experiment: str) -> str:
        """:func:`table_spec`."""
        return self._once(("tables", experiment), lambda: table_spec(self.cfg, experiment))

    def experiment_inputs(self, experiment: str) -> list[str]:
        """:func:`soften.pipeline.layout.experiment_inputs`."""
        return self._once(("inputs", experiment), lambda: L.experiment_inputs(self.cfg, experiment))

    def figure_inputs(self, experiment: str) -> list[str]:
        """:func:`soften.pipeline.layout.figure_inputs`."""
        return self._once(("figure", experiment), lambda: L.figure_inputs(self.cfg, experiment))


# ------------------------------------------------------------------ every job, concretely

@dataclass
class Job:
    """One job: what the Snakemake rule ``stage`` runs for one set of wildcards.

    ``input``/``output`` map a name to its files (name ``""`` for unnamed ones), in
    the rule's order; ``params`` are the values the command template uses.
    """

    stage: str
    name: str
    wildcards: dict[str, str]
    input: dict[str, list[str]]
    output: dict[str, list[str]]
    params: dict[str, Any] = field(default_factory=dict)

    def inputs(self) -> list[str]:
        """Every input file, in order."""
        return [f for files in self.input.values() for f in files]

    def outputs(self) -> list[str]:
        """Every output file, in order."""
        return [f for files in self.output.values() for f in files]

    def command(self) -> str:
        """The stage's command for this job (without placement and log)."""
        return format_command(COMMANDS[self.stage], self)


def _run_job(stage: str, run: L.Run, inputs: dict[str, list[str]], outputs: list[str],
             params: dict[str, Any] | None = None) -> Job:
    return Job(stage, run.label, run.wildcards(), inputs, {"": outputs}, params or {})


def all_jobs(cfg: dict[str, Any]) -> list[Job]:
    """Every job ``snakemake all`` runs for this config, stage by stage in pipeline order."""
    runs = sc.required_runs(cfg)
    ix = Index(cfg)
    batched, own = ix.batched, L.own_job_evaluations(cfg)
    eval_ckpts = L.kind_checkpoints(cfg, "accuracy")
    cal_ckpts, san_ckpts = L.kind_checkpoints(cfg, "calibration"), L.kind_checkpoints(cfg, "sanity")
    pairs, tr_ckpts = L.transfer_pairs(cfg), L.kind_checkpoints(cfg, "transfer")
    jobs: list[Job] = []
    for d in dict.fromkeys(r.dataset for r in runs):
        jobs.append(Job("fetch", d, {"dataset": d}, {},
                        {"npz": [L.dataset_path(cfg, d)], "meta": [L.dataset_meta_path(cfg, d)]},
                        {"entry": ix.fetch_entry(d)}))
    for d, n in dict.fromkeys((r.dataset, r.noise) for r in runs):
        jobs.append(Job("noise", f"{d}/{n}", {"dataset": d, "noise": n}, {"npz": [L.dataset_path(cfg, d)]},
                        {"npz": [L.noise_path(cfg, d, n)], "meta": [L.noise_meta_path(cfg, d, n)]},
                        {"seed": cfg["noise_seed"]}))
    for r in runs:
        jobs.append(Job("train", r.label, r.wildcards(),
                        {"npz": [L.dataset_path(cfg, r.dataset)], "noise": [L.noise_path(cfg, r.dataset, r.noise)],
                         "teachers": ix.teacher_checkpoints(r)},
                        {**{c: [L.checkpoint_path(cfg, r, c)] for c in L.train_checkpoints(cfg)},
                         "history": [L.history_path(cfg, r)]},
                        {"spec": ix.run_spec(r), "out": L.run_dir(cfg, r)}))
    npz = lambda r: [L.dataset_path(cfg, r.dataset)]  # noqa: E731
    ckpts = lambda r, cs: [L.checkpoint_path(cfg, r, c) for c in cs]  # noqa: E731
    if batched:
        for r in L.kind_runs(cfg, "accuracy"):
            jobs.append(_run_job("evaluate", r, {"ckpts": ckpts(r, eval_ckpts), "npz": npz(r)},
                                 [L.eval_path(cfg, r, c, a) for c in eval_ckpts for a in batched],
                                 {"spec": ix.eval_specs(r.dataset)}))
    for r, c, a in own:
        job = _run_job("evaluate_attack", r, {"ckpt": ckpts(r, [c]), "npz": npz(r)}, [L.eval_path(cfg, r, c, a)],
                       {"spec": ix.attack_spec(r.dataset, a)})
        job.name, job.wildcards = f"{r.label}/{c}/{a}", {**r.wildcards(), "ckpt": c, "attack": a}
        jobs.append(job)
    for r in L.kind_runs(cfg, "calibration") if cal_ckpts else []:
        jobs.append(_run_job("calibrate", r, {"ckpts": ckpts(r, cal_ckpts), "npz": npz(r)},
                             [L.calibration_path(cfg, r, c) for c in cal_ckpts],
                             {"spec": ix.calibration_spec(r.dataset)}))
    for r in L.kind_runs(cfg, "sanity") if san_ckpts else []:
        jobs.append(_run_job("sanity", r, {"ckpts": ckpts(r, san_ckpts), "npz": npz(r)},
                             [L.sanity_path(cfg, r, c) for c in san_ckpts], {"spec": ix.sanity_spec(r.dataset)}))
    for d, s, a in L.transfer_sets(cfg):
        jobs.append(Job("craft_transfer", f"{d}/{s}/{a}", {"dataset": d, "source": s, "attack": a},
                        {"ckpt": [ix.source_checkpoint(d, s)], "npz": [L.dataset_path(cfg, d)]},
                        {"": [L.transfer_set_path(cfg, d, s, a)]}, {"spec": ix.transfer_spec(d, s, a)}))
    for r in L.kind_runs(cfg, "transfer") if pairs else []:
        jobs.append(_run_job("evaluate_transfer", r,
                             {"ckpts": ckpts(r, tr_ckpts),
                              "crafted": [L.transfer_set_path(cfg, r.dataset, s, a) for s, a in pairs]},
                             [L.transfer_eval_path(cfg, r, c, s, a) for c in tr_ckpts for s, a in pairs]))
    for e in cfg["experiments"]:
        spec = ix.table_spec(e)
        jobs.append(Job("tables", e, {"experiment": e}, {"": ix.experiment_inputs(e)},
                        {k: [v] for k, v in L.table_paths(cfg, e).items()}, {"spec": spec}))
        jobs.append(Job("figures", e, {"experiment": e}, {"": ix.figure_inputs(e)},
                        {"": [L.figure_path(cfg, e)]}, {"spec": spec}))
    jobs.append(Job("verdict", "verdict", {}, {"": L.verdict_inputs(cfg)}, {k: [v] for k, v in L.verdict_paths(cfg).items()},
                    {"spec": verdict_spec(cfg)}))
    order = {s: i for i, s in enumerate(COMMANDS)}
    return sorted(jobs, key=lambda j: order[j.stage])  # stable: grid order within a stage


# ------------------------------------------------------------------ Snakemake's formatting

class _Files(list):
    """A job's input or output files: the whole list, or a named group as an attribute."""

    def __init__(self, groups: dict[str, list[str]]):
        super().__init__(f for files in groups.values() for f in files)
        for name, files in groups.items():
            if name:
                setattr(self, name, list(files))


class _Namespace:
    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


class _SnakemakeFormatter(string.Formatter):
    """``{x}`` and ``{x:q}`` as Snakemake fills a shell command: lists joined by spaces,
    ``q`` quoting each item with shlex.quote."""

    def format_field(self, value: Any, format_spec: str) -> str:
        """One ``{field:spec}``: the value, or its items joined by spaces; ``q`` shell-quotes each."""
        items = value if isinstance(value, list) else [value]
        if format_spec == "q":
            return " ".join(shlex.quote(str(v)) for v in items)
        if format_spec:
            raise ValueError(f"unsupported format spec {format_spec!r}")
        return " ".join(str(v) for v in items)


def format_command(template: str, job: Job) -> str:
    """``template`` filled with ``job``'s files, params and wildcards, as Snakemake fills a rule's shell."""
    return _SnakemakeFormatter().format(template, input=_Files(job.input), output=_Files(job.output),
                                        params=_Namespace(job.params), wildcards=_Namespace(job.wildcards))


def report_category(cfg: dict[str, Any], experiment: str) -> str:
    """The experiment's category in ``snakemake --report``: its title up to the colon
    ("SGLR Table 2") when no other experiment shares that prefix, else its name."""

    def prefix(name):
        return (cfg["experiments"][name].get("title") or name).split(":")[0].strip()

    mine = prefix(experiment)
    shared = sum(prefix(n) == mine for n in cfg["experiments"]) > 1
    return experiment if shared or not mine else mine
