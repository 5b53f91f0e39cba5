"""Command line: ``python -m soften COMMAND ...``.

The stage commands (fetch, noise, train, evaluate, evaluate_attack, calibrate, sanity,
craft_transfer, evaluate_transfer, tables, figures, verdict) are the Snakemake rules of the
same name and call the function of the same name in soften.pipeline.stages. Each takes its
settings either from an experiment file (``--configfile``) or, as Snakemake passes
them, as a resolved JSON spec (``--spec``), so both routes run the same settings.
``show-config`` prints what an experiment file resolves to.

A problem the user can fix (a bad config key, a missing, corrupt or foreign file, a
diverged run, a full disk) is printed as one line, ``soften STAGE: error: ...``,
and the command exits with status 2; ``-v`` adds the traceback. docs/troubleshooting.md
lists the messages. Any other exception is a bug and keeps its traceback (status 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from soften.pipeline import stages
from soften.errors import ConfigError, SoftenError

log = logging.getLogger("soften")

#: What the CLI reports as one line with exit status 2. ValueError covers the checks
#: that raise it with a message naming the value; OSError a missing or unwritable path.
USER_ERRORS = (SoftenError, ConfigError, ValueError, OSError)

#: One example per command, on the CPU demo's files (tests/test_cli.py parses each one).
_RUN = "results/digits/none/cnn/pgd-at/seed0"
_DEMO = "--configfile config/config.yaml --dataset digits"
_NPZ = "--dataset-npz resources/datasets/digits.npz"
EXAMPLES = {
    "fetch": f"python -m soften fetch {_DEMO} --out resources/datasets/digits.npz",
    "noise": "python -m soften noise --dataset-npz resources/datasets/digits.npz --noise symmetric-0.4 "
             "--out resources/noise/digits/symmetric-0.4.npz",
    "train": f"python -m soften train {_DEMO} --noise none --arch cnn --method pgd-at --seed 0 --out {_RUN}",
    "evaluate": f"python -m soften evaluate {_DEMO} --attack natural,pgd20 --checkpoint {_RUN}/best.pt {_NPZ} "
                f"--out best-natural.json best-pgd20.json",
    "evaluate_attack": f"python -m soften evaluate_attack {_DEMO} --attack aa --checkpoint {_RUN}/best.pt {_NPZ} "
                       f"--out best-aa.json",
    "calibrate": f"python -m soften calibrate {_DEMO} --checkpoint {_RUN}/best.pt {_NPZ} --out calibration-best.json",
    "sanity": f"python -m soften sanity {_DEMO} --checkpoint {_RUN}/best.pt {_NPZ} --out sanity-best.json",
    "craft_transfer": f"python -m soften craft_transfer {_DEMO} --source cnn-at-s100 --attack pgd10 "
                      f"--checkpoint results/digits/none/cnn/pgd-at/seed100/best.pt {_NPZ} --out pgd10.pt",
    "evaluate_transfer": f"python -m soften evaluate_transfer --checkpoint {_RUN}/best.pt --crafted pgd10.pt "
                         f"--out best-pgd10.json",
    "tables": "python -m soften tables --configfile config/config.yaml --experiment main --out main.md",
    "figures": "python -m soften figures --configfile config/config.yaml --experiment main --out main.png",
    "verdict": "python -m soften verdict --configfile config/config.yaml --out results/verdict.md",
    "export_robustbench": f"python -m soften export_robustbench {_RUN} --out export/pgd-at-digits",
    "bench": "python -m soften bench --quick",
    "plan": "python -m soften plan --configfile config/sglr.yaml",
    "dvc_pipeline": "python -m soften dvc_pipeline --configfile config/config.yaml --out dvc.yaml",
    "show-config": "python -m soften show-config --configfile config/sglr.yaml --run cifar10/none/resnet18/pgd-at+sglr/seed0",
}


def _configfiles(args) -> list[str]:
    return args.configfile or []


def _load(args):
    """The config from ``--configfile``/``--config`` (the route without ``--spec``)."""
    from soften.pipeline.config import load_config

    if not _configfiles(args):
        raise ConfigError("give either --spec JSON or --configfile FILE")
    return load_config(_configfiles(args), _overrides(args))


def _overrides(args) -> dict:
    out = {}
    for item in getattr(args, "config", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--config takes KEY=VALUE, got {item!r}")
        import yaml

        out[key] = yaml.safe_load(value) if value else None
    return out


#: Environment variables that place a job when its command line does not (the DVC route:
#: ``SOFTEN_DEVICE=cuda dvc repro``), so that moving jobs changes no DVC command.
PLACEMENT_ENV = {"device": "SOFTEN_DEVICE", "threads": "SOFTEN_THREADS", "gpu_slots": "SOFTEN_GPU_SLOTS",
                 "tracking": "SOFTEN_TRACKING"}


def _placed(spec: dict, args) -> dict:
    """Where a job runs is not part of its spec's identity. It comes from --device/--threads/
    --gpu-slots/--tracking, else $SOFTEN_DEVICE/$SOFTEN_THREADS/$SOFTEN_GPU_SLOTS/
    $SOFTEN_TRACKING, else the spec, else auto, 1 thread, 1 slot per GPU, no tracking."""
    spec = dict(spec)
    for key, env in PLACEMENT_ENV.items():
        value = getattr(args, key, None) or os.environ.get(env)
        if value:
            spec[key] = int(value) if key in ("threads", "gpu_slots") else value
    spec.setdefault("device", "auto")
    spec.setdefault("threads", 1)
    spec.setdefault("gpu_slots", 1)
    spec.setdefault("tracking", "none")  # every route (Snakemake, DVC, by hand) records the same keys
    log.info("placement: device %s, %s thread(s), %s job slot(s) per GPU, tracking %s", spec["device"], spec["threads"],
             spec["gpu_slots"], spec.get("tracking", "none"))
    return spec


def _json(text: str, flag: str):
    try:
        return json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{flag} is not valid JSON ({err})") from None


def _spec(args, resolver):
    """The job's spec: ``--spec`` JSON as Snakemake and DVC pass it, else
    ``resolver(soften.pipeline.config, cfg)`` on the ``--configfile`` config. Only the latter
    imports soften.pipeline.config, so a pipeline job runs no config code (soften.pipeline.codedeps)."""
    if args.spec:
        spec = _json(args.spec, "--spec")
    else:
        from soften.pipeline import config

        cfg = _load(args)
        spec = resolver(config, cfg)
        if not getattr(args, "gpu_slots", None) and not os.environ.get(PLACEMENT_ENV["gpu_slots"]):
            args.gpu_slots = cfg.get("gpu_slots_per_device", 1)
    if isinstance(spec, list):
        return [_placed(s, args) for s in spec]
    return _placed(spec, args)


def _required(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) in (None, "")]
    if missing:
        raise ConfigError(f"with --configfile, also give {', '.join(missing)}")


def cmd_fetch(args):
    """``fetch``: the dataset entry from ``--entry`` JSON (or ``--configfile``) into ``--out`` (npz +
    json); prints dataset, splits, sha256."""
    if args.entry:
        entry = _json(args.entry, "--entry")
    else:
        from soften.pipeline.config import fetch_entry

        cfg = _load(args)
        if args.dataset not in cfg["datasets"]:
            raise ConfigError(f"dataset {args.dataset!r} has no entry under 'datasets' in {', '.join(_configfiles(args))}")
        entry = fetch_entry(cfg, args.dataset)
    meta = stages.fetch(entry, args.out, args.download_dir)
    print(json.dumps({k: meta[k] for k in ("dataset", "splits", "sha256")}))


def cmd_noise(args):
    """``noise``: noisy training labels of ``--dataset-npz`` under ``--noise`` into ``--out``; prints
    the draw's summary."""
    print(json.dumps(stages.noise(args.dataset_npz, args.noise, args.seed, args.out)))


def cmd_train(args):
    """``train``: one run from ``--spec`` (or ``--configfile`` and the run's fields) into ``--out``,
    resuming from its last.pt."""
    if not args.spec:
        _required(args, "dataset", "noise", "arch", "method")
    spec = _spec(args, lambda c, cfg: c.resolve_run(cfg, args.dataset, args.noise, args.arch, args.method, args.seed))
    stages.train(spec, args.out, stop_after_epoch=args.stop_after_epoch)


def cmd_evaluate(args):
    """``evaluate``: each ``--checkpoint`` under each attack spec, one ``--out`` JSON per pair, checkpoint-major."""
    if not args.spec:
        _required(args, "dataset", "attack")
    specs = _spec(args, lambda c, cfg: [c.resolve_eval(cfg, args.dataset, a) for a in args.attack.split(",")])
    stages.evaluate(args.checkpoint, args.dataset_npz, specs if isinstance(specs, list) else [specs], args.out)


def cmd_evaluate_attack(args):
    """``evaluate_attack``: one ``--checkpoint`` under one attack, into one ``--out`` JSON."""
    if not args.spec:
        _required(args, "dataset", "attack")
    stages.evaluate_attack(args.checkpoint[0], args.dataset_npz,
                           _spec(args, lambda c, cfg: c.resolve_eval(cfg, args.dataset, args.attack)), args.out[0])


def cmd_calibrate(args):
    """``calibrate``: ECE and reliability data of each ``--checkpoint``, one ``--out`` JSON each."""
    if not args.spec:
        _required(args, "dataset")
    stages.calibrate(args.checkpoint, args.dataset_npz,
                     _spec(args, lambda c, cfg: c.resolve_calibration(cfg, args.dataset)), args.out)


def cmd_sanity(args):
    """``sanity``: gradient-masking checks of each ``--checkpoint``, one ``--out`` JSON each."""
    if not args.spec:
        _required(args, "dataset")
    stages.sanity(args.checkpoint, args.dataset_npz, _spec(args, lambda c, cfg: c.resolve_sanity(cfg, args.dataset)),
                  args.out)


def cmd_craft_transfer(args):
    """``craft_transfer``: a transfer set crafted on ``--checkpoint`` into ``--out`` (.pt); prints its meta."""
    if not args.spec:
        _required(args, "dataset", "source", "attack")
    spec = _spec(args, lambda c, cfg: c.resolve_transfer(cfg, args.dataset, args.source, args.attack))
    print(json.dumps(stages.craft_transfer(args.checkpoint, args.dataset_npz, spec, args.out)))


def cmd_evaluate_transfer(args):
    """``evaluate_transfer``: each ``--checkpoint`` on each ``--crafted`` set, one ``--out`` JSON per
    pair, checkpoint-major."""
    spec = _placed({"batch_size": args.batch_size}, args)
    stages.evaluate_transfer(args.checkpoint, args.crafted, args.out, spec)


def _table_spec(args):
    if args.spec:
        return _json(args.spec, "--spec")
    from soften.pipeline.config import table_spec

    if not args.experiment:
        raise ConfigError("give --spec JSON, or --configfile FILE with --experiment NAME")
    return table_spec(_load(args), args.experiment)


def _inputs(args, files_of: str) -> list[str]:
    """The files given, or with --configfile the ones the experiment is made from
    (``soften.pipeline.layout.<files_of>``; imported only then, so a pipeline job runs no layout code)."""
    if args.inputs:
        return args.inputs
    if args.spec or not args.experiment:
        raise ConfigError("give the input files, or --configfile FILE with --experiment NAME")
    from soften.pipeline import layout

    return getattr(layout, files_of)(_load(args), args.experiment)


def cmd_tables(args):
    """``tables``: one experiment's table from its inputs (default: where the pipeline writes
    them), into ``--out`` (.md; .csv, .tex and .html beside it); prints the Markdown."""
    spec = _table_spec(args)  # first: it names an unknown experiment
    print(stages.tables(_inputs(args, "experiment_inputs"), spec, args.out))


def cmd_figures(args):
    """``figures``: one experiment's figure from its inputs, into ``--out`` (.png); prints the path."""
    spec = _table_spec(args)
    print(stages.figures(_inputs(args, "figure_inputs"), spec, args.out))


def cmd_verdict(args):
    """``verdict``: the results directory's verdict page from every table's .csv (default: where the
    pipeline writes them), into ``--out`` (.md; .json beside it); prints the Markdown. A failed
    reproduction is a result: the exit status stays 0."""
    if args.spec:
        spec = _json(args.spec, "--spec")
    else:
        from soften.pipeline.config import verdict_spec

        spec = verdict_spec(_load(args))
    inputs = args.inputs
    if not inputs:
        if args.spec:
            raise ConfigError("give the tables' .csv files, or --configfile FILE")
        from soften.pipeline import layout

        inputs = layout.verdict_inputs(_load(args))
    print(stages.verdict(inputs, spec, args.out))


def cmd_export_robustbench(args):
    """``export_robustbench``: a run's checkpoint as a RobustBench model card, state_dict and model.py."""
    from soften.tools.robustbench import export

    paper = {"link": args.link, "name": args.title, "authors": args.authors, "venue": args.venue}
    print(json.dumps(export(args.run_dir, args.out, checkpoint=args.checkpoint, name=args.name, paper=paper), indent=1))


def cmd_dvc_pipeline(args):
    """``dvc_pipeline``: the dvc.yaml of a config (soften.pipeline.dvc_pipeline), to stdout or ``--out``."""
    from soften.pipeline.config import load_config
    from soften.pipeline.dvc_pipeline import render

    files = _configfiles(args) or ["config/config.yaml"]
    overrides = _overrides(args)
    label = " --configfile ".join(files) + "".join(f" --config {k}={v}" for k, v in (args.config or []) and
                                                  [i.partition("=")[::2] for i in args.config])
    text = render(load_config(files, overrides), label, args.root)
    if args.out:
        from soften.io import save_text

        save_text(text, args.out)
    else:
        print(text, end="")


def cmd_show_config(args):
    """``show-config``: a config resolved with each value's origin, or one run's spec (``--run``), or
    an experiment's runs."""
    from soften.tools.show import show_config

    print(show_config(_configfiles(args) or ["config/config.yaml"], _overrides(args), run=args.run,
                      experiment=args.experiment), end="")


def cmd_bench(args):
    """``bench``: training and evaluation cost on this machine (soften.tools.bench), JSON + Markdown."""
    from soften.tools import bench

    result = bench.run_suite(device=args.device or "auto", quick=args.quick, threads=args.threads,
                             mini_config=None if args.no_mini else args.mini_config,
                             mini_overrides=_overrides(args) or None,
                             log=lambda line: print(line, file=sys.stderr, flush=True),
                             checkpoint=lambda partial: bench.write(partial, args.out))
    js, md = bench.write(result, args.out)
    print(md.read_text(), end="")
    print(f"wrote {js} and {md}", file=sys.stderr)


def cmd_plan(args):
    """``plan``: an experiment file's runs, those still to train, and the GPU-hours left (soften.tools.plan)."""
    from soften.tools import plan

    if not _configfiles(args):
        raise ConfigError("give --configfile FILE (an experiment file, e.g. config/sglr.yaml)")
    cfg = _load(args)
    estimate = plan.plan(cfg, plan.load_figures(args.bench, args.device_name))
    print(plan.render(estimate, wide=args.runs), end="")


def _add_config_args(s, required: bool = False):
    s.add_argument("--configfile", action="append", required=required, metavar="FILE",
                   help="experiment file (repeat to merge overlays, later files win), e.g. config/sglr.yaml")
    s.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="override a top-level key, e.g. --config scale=smoke (repeatable)")


def _add_placement(s):
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the spec's, else auto)")
    s.add_argument("--threads", type=int, help="CPU threads (default: the spec's, else 1)")
    s.add_argument("--gpu-slots", type=int, help="soften jobs that may share one GPU (config gpu_slots_per_device; "
                                                 "default 1)")


def _sub(sub, name, helptext, func, *aliases):
    example = EXAMPLES.get(name)
    s = sub.add_parser(name, aliases=list(aliases), help=helptext, description=helptext,
                       epilog=f"example:\n  {example}" if example else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.set_defaults(func=func)
    return s


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per stage (the Snakemake rule of the same name), plus
    dvc_pipeline and show-config."""
    from soften import __version__

    p = argparse.ArgumentParser(prog="python -m soften", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"soften {__version__}")
    sub = p.add_subparsers(dest="stage", required=True, metavar="COMMAND")

    s = _sub(sub, "fetch", "materialise a dataset as one npz + JSON sidecar", cmd_fetch)
    _add_config_args(s)
    s.add_argument("--entry", help="the dataset's config entry as JSON (what Snakemake passes)")
    s.add_argument("--dataset", required=True, help="dataset name (a key under 'datasets')")
    s.add_argument("--out", required=True, help="output .npz path")
    s.add_argument("--download-dir", help="download cache (default: ../downloads beside the output's folder)")

    s = _sub(sub, "noise", "inject label noise into the training labels", cmd_noise)
    s.add_argument("--dataset-npz", required=True, help="the fetched dataset")
    s.add_argument("--noise", required=True, help="'none' or KIND-RATE, e.g. symmetric-0.4 or asymmetric-0.4")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise draw (default 0)")
    s.add_argument("--out", required=True, help="output .npz path")

    s = _sub(sub, "train", "train (or resume) one run", cmd_train)
    s.add_argument("--spec", help="resolved run spec as JSON (what Snakemake passes)")
    _add_config_args(s)
    s.add_argument("--dataset", help="with --configfile: dataset name")
    s.add_argument("--noise", help="with --configfile: 'none' or KIND-RATE")
    s.add_argument("--arch", help="with --configfile: architecture, e.g. resnet18")
    s.add_argument("--method", help="with --configfile: method or variant name, e.g. pgd-at+sglr")
    s.add_argument("--seed", type=int, default=0, help="with --configfile: training seed (default 0)")
    s.add_argument("--out", required=True, help="run directory")
    s.add_argument("--stop-after-epoch", type=int, default=None, help="stop after this epoch's checkpoint (as a kill would)")
    _add_placement(s)
    s.add_argument("--tracking", choices=["none", "tensorboard"],
                   help="per-epoch metrics to TensorBoard in RUN/tensorboard/ (default: the config's 'tracking', else none)")

    for name, helptext, func in (
        ("evaluate", "evaluate one checkpoint under attacks (natural, PGD, CW), one JSON each", cmd_evaluate),
        ("evaluate_attack", "evaluate one checkpoint under one attack (AutoAttack, Square, or any other)",
         cmd_evaluate_attack),
        ("calibrate", "ECE and reliability data of one checkpoint", cmd_calibrate),
        ("sanity", "gradient-masking sanity checks of one checkpoint", cmd_sanity),
    ):
        s = _sub(sub, name, helptext, func)
        many = name != "evaluate_attack"
        s.add_argument("--checkpoint", required=True, nargs="+" if many else 1,
                       help="best.pt and/or final.pt of a run" if many else "best.pt or final.pt of a run")
        s.add_argument("--dataset-npz", required=True, help="the fetched dataset (its test split is used)")
        s.add_argument("--spec", help="resolved spec as JSON (what Snakemake passes; a list for evaluate)")
        _add_config_args(s)
        s.add_argument("--dataset", help="with --configfile: dataset name")
        if name == "evaluate":
            s.add_argument("--attack", help="with --configfile: attack names under evaluation.attacks, comma-separated")
        if name == "evaluate_attack":
            s.add_argument("--attack", help="with --configfile: one attack name under evaluation.attacks, e.g. aa")
        s.add_argument("--out", required=True, nargs="+" if many else 1,
                       help={"evaluate": "one output JSON per checkpoint and attack, checkpoint-major",
                             "evaluate_attack": "output JSON"}.get(name, "one output JSON per checkpoint"))
        _add_placement(s)

    s = _sub(sub, "craft_transfer", "craft a black-box transfer set on a source checkpoint", cmd_craft_transfer,
             "craft-transfer")
    s.add_argument("--checkpoint", required=True, help="the source model's checkpoint")
    s.add_argument("--dataset-npz", required=True, help="the fetched dataset")
    s.add_argument("--spec", help="resolved transfer spec as JSON")
    _add_config_args(s)
    s.add_argument("--dataset", help="with --configfile: dataset name")
    s.add_argument("--source", help="with --configfile: a name under transfer.sources")
    s.add_argument("--attack", help="with --configfile: a name under transfer.attacks")
    s.add_argument("--out", required=True, help="output .pt")
    _add_placement(s)

    s = _sub(sub, "evaluate_transfer", "evaluate a target checkpoint on crafted transfer sets", cmd_evaluate_transfer,
             "evaluate-transfer")
    s.add_argument("--checkpoint", required=True, nargs="+", help="the target run's checkpoints")
    s.add_argument("--crafted", required=True, nargs="+", help="transfer sets from craft_transfer")
    s.add_argument("--out", required=True, nargs="+", help="one JSON per checkpoint and set, checkpoint-major")
    s.add_argument("--batch-size", type=int, default=512, help="evaluation batch size (speed only)")
    _add_placement(s)

    for name, helptext, func, out_help in (
        ("tables", "one experiment's table (.md, with .csv, .tex and .html beside it)", cmd_tables,
         "output .md (.csv, .tex and .html are written beside it)"),
        ("figures", "one experiment's figure (.png)", cmd_figures, "output .png"),
    ):
        s = _sub(sub, name, helptext, func)
        s.add_argument("inputs", nargs="*", metavar="INPUT",
                       help="the experiment's result JSON / history.csv files (default with --configfile: "
                            "the files the experiment is made from, where the pipeline writes them)")
        s.add_argument("--spec", help="the experiment's table spec as JSON (what Snakemake passes)")
        _add_config_args(s)
        s.add_argument("--experiment", help="with --configfile: the experiment's name, e.g. main")
        s.add_argument("--out", required=True, help=out_help)

    s = _sub(sub, "verdict", "the verdict page: every table cell against the paper and every claim tested "
             "(.md, with .json beside it)", cmd_verdict)
    s.add_argument("inputs", nargs="*", metavar="CSV",
                   help="every experiment's table .csv, in config order (default with --configfile: where the pipeline writes them)")
    s.add_argument("--spec", help="the verdict spec as JSON (what Snakemake passes)")
    _add_config_args(s)
    s.add_argument("--out", required=True, help="output .md (.json is written beside it)")

    s = _sub(sub, "export_robustbench", "export a run's checkpoint as a RobustBench claim: model card (JSON), "
             "state_dict, and a model.py that loads it without soften", cmd_export_robustbench, "export-robustbench")
    s.add_argument("run_dir", metavar="RUN_DIR", help="a trained and evaluated run, e.g. results/sglr/cifar10/none/resnet18/pgd-at+sglr/seed0")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    s.add_argument("--checkpoint", choices=["best", "best_test", "final"], default="best", help="which checkpoint (default best)")
    s.add_argument("--name", help="model name (default soften_<dataset>_<noise>_<arch>_<method>_seed<k>_<checkpoint>)")
    s.add_argument("--link", help="paper URL for the card (default: the method's paper, SGLR or ADR)")
    s.add_argument("--title", help="paper title for the card's 'name' field")
    s.add_argument("--authors", help="paper authors for the card")
    s.add_argument("--venue", help="paper venue for the card, e.g. 'CVPR 2024'")

    s = _sub(sub, "bench", "measure training and evaluation cost on this machine (JSON + Markdown in benchmarks/results)",
             cmd_bench)
    s.add_argument("--quick", action="store_true", help="tiny sizes, seconds on CPU (tests); figures estimate nothing")
    s.add_argument("--out", default="benchmarks/results", help="output folder (default benchmarks/results)")
    s.add_argument("--mini-config", default="config/cifar10-mini.yaml",
                   help="experiment file of the real short run (default config/cifar10-mini.yaml)")
    s.add_argument("--no-mini", action="store_true", help="skip the real short run")
    s.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="override a key of the mini config (default on CPU: 1 epoch; with --quick: scale=smoke)")
    _add_placement(s)

    s = _sub(sub, "plan", "the runs an experiment file needs, which exist, and the GPU-hours left", cmd_plan)
    _add_config_args(s)
    s.add_argument("--bench", help="benchmark JSON to cost with (default: benchmarks/results/<this GPU>.json, "
                   "else the documented reference figure)")
    s.add_argument("--device-name", help="cost for this GPU's benchmark JSON in benchmarks/results (e.g. 'NVIDIA H100 80GB HBM3')")
    s.add_argument("--runs", action="store_true", help="also list every run still to train")

    s = _sub(sub, "dvc_pipeline", "print the DVC pipeline (dvc.yaml) of a config: one stage per Snakemake job",
             cmd_dvc_pipeline, "dvc-pipeline")
    _add_config_args(s)
    s.add_argument("--root", default=".", help="the repository root, where dvc.yaml lives (default: .)")
    s.add_argument("--out", help="write here instead of stdout (atomically)")

    s = _sub(sub, "show-config", "print an experiment file fully resolved, or one run's spec, with where each value "
             "comes from", cmd_show_config, "show_config")
    _add_config_args(s)
    s.add_argument("--run", help="DATASET/NOISE/ARCH/METHOD/seedK: print that run's resolved spec")
    s.add_argument("--experiment", help="print the runs of that experiment")
    return p


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv=None) -> int:
    """Run one command; a ConfigError, ValueError, OSError or RuntimeError prints one line and returns 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from soften.pipeline.lifetime import clean_exit_on_sigterm, end_with_snakemake

    end_with_snakemake()  # a job killed Snakemake leaves behind stops too (see soften.pipeline.lifetime)
    try:
        with clean_exit_on_sigterm():
            args.func(args)
    except KeyboardInterrupt:
        print(f"soften {args.stage}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if args.verbose:
            log.exception("traceback")
        print(f"soften {args.stage}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if type(err).__name__ != "OutOfMemoryError":  # torch.OutOfMemoryError; any other RuntimeError is a bug
            raise
        if args.verbose:
            log.exception("traceback")
        print(f"soften {args.stage}: error: out of GPU memory ({_one_line(err)[:200]}); lower the batch size "
              "(training.batch_size, an attack's batch size) or gpu_slots_per_device, or use a larger GPU",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
