"""Command line: ``python -m soften COMMAND ...``.

The stage commands (fetch, noise, train, evaluate, evaluate_attack, calibrate, sanity,
craft_transfer, evaluate_transfer, tables, figures) are the Snakemake rules of the
same name and call the function of the same name in soften.stages. Each takes its
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
import sys
from pathlib import Path

from soften import stages
from soften.config import ConfigError
from soften.errors import SoftenError

log = logging.getLogger("soften")

#: What the CLI reports as one line with exit status 2. ValueError covers the checks
#: that raise it with a message naming the value; OSError a missing or unwritable path.
USER_ERRORS = (SoftenError, ConfigError, ValueError, OSError)

EXAMPLES = {
    "fetch": "python -m soften fetch --configfile config/config.yaml --dataset digits --out resources/datasets/digits.npz",
    "noise": "python -m soften noise --dataset-npz resources/datasets/digits.npz --noise symmetric-0.4 "
             "--out resources/noise/digits/symmetric-0.4.npz",
    "train": "python -m soften train --configfile config/config.yaml --dataset digits --noise none --arch cnn "
             "--method pgd-at --seed 0 --out results/digits/none/cnn/pgd-at/seed0",
    "evaluate": "python -m soften evaluate --configfile config/config.yaml --attack pgd20 "
                "--checkpoint results/digits/none/cnn/pgd-at/seed0/best.pt --dataset-npz resources/datasets/digits.npz "
                "--out best-pgd20.json",
    "show-config": "python -m soften show-config --configfile config/sglr.yaml --run cifar10/none/resnet18/pgd-at+sglr/seed0",
}


def _configfiles(args) -> list[str]:
    return args.configfile or []


def _load(args):
    from soften.config import load_config

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


def _placed(spec: dict, args) -> dict:
    """Where a job runs is not part of its spec's identity: --device/--threads/--gpu-slots set it."""
    spec = dict(spec)
    if getattr(args, "device", None):
        spec["device"] = args.device
    if getattr(args, "threads", None):
        spec["threads"] = args.threads
    if getattr(args, "gpu_slots", None):
        spec["gpu_slots"] = args.gpu_slots
    spec.setdefault("device", "auto")
    spec.setdefault("threads", 1)
    spec.setdefault("gpu_slots", 1)
    return spec


def _json(text: str, flag: str):
    try:
        return json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{flag} is not valid JSON ({err})") from None


def _spec(args, resolver):
    if args.spec:
        spec = _json(args.spec, "--spec")
    else:
        cfg = _load(args)
        spec = resolver(cfg)
        if not getattr(args, "gpu_slots", None):
            args.gpu_slots = cfg.get("gpu_slots_per_device", 1)
    return [_placed(s, args) for s in spec] if isinstance(spec, list) else _placed(spec, args)


def _required(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) in (None, "")]
    if missing:
        raise ConfigError(f"with --configfile, also give {', '.join(missing)}")


def cmd_fetch(args):
    from soften.config import fetch_entry

    if args.entry:
        entry = _json(args.entry, "--entry")
    else:
        cfg = _load(args)
        if args.dataset not in cfg["datasets"]:
            raise ConfigError(f"dataset {args.dataset!r} has no entry under 'datasets' in {', '.join(_configfiles(args))}")
        entry = fetch_entry(cfg, args.dataset)
    meta = stages.fetch(entry, args.out, args.download_dir)
    print(json.dumps({k: meta[k] for k in ("dataset", "splits", "sha256")}))


def cmd_noise(args):
    print(json.dumps(stages.noise(args.dataset_npz, args.noise, args.seed, args.out)))


def cmd_train(args):
    from soften.config import resolve_run

    if not args.spec:
        _required(args, "dataset", "noise", "arch", "method")
    spec = _spec(args, lambda cfg: resolve_run(cfg, args.dataset, args.noise, args.arch, args.method, args.seed))
    stages.train(spec, args.out, stop_after_epoch=args.stop_after_epoch)


def cmd_evaluate(args):
    from soften.config import resolve_eval

    if not args.spec:
        _required(args, "dataset", "attack")
    specs = _spec(args, lambda cfg: [resolve_eval(cfg, args.dataset, a) for a in args.attack.split(",")])
    stages.evaluate(args.checkpoint, args.dataset_npz, specs if isinstance(specs, list) else [specs], args.out)


def cmd_evaluate_attack(args):
    from soften.config import resolve_eval

    if not args.spec:
        _required(args, "dataset", "attack")
    stages.evaluate_attack(args.checkpoint[0], args.dataset_npz,
                           _spec(args, lambda cfg: resolve_eval(cfg, args.dataset, args.attack)), args.out[0])


def cmd_calibrate(args):
    from soften.config import resolve_calibration

    if not args.spec:
        _required(args, "dataset")
    stages.calibrate(args.checkpoint, args.dataset_npz, _spec(args, lambda cfg: resolve_calibration(cfg, args.dataset)), args.out)


def cmd_sanity(args):
    from soften.config import resolve_sanity

    if not args.spec:
        _required(args, "dataset")
    stages.sanity(args.checkpoint, args.dataset_npz, _spec(args, lambda cfg: resolve_sanity(cfg, args.dataset)), args.out)


def cmd_craft_transfer(args):
    from soften.config import resolve_transfer

    if not args.spec:
        _required(args, "dataset", "source", "attack")
    spec = _spec(args, lambda cfg: resolve_transfer(cfg, args.dataset, args.source, args.attack))
    print(json.dumps(stages.craft_transfer(args.checkpoint, args.dataset_npz, spec, args.out)))


def cmd_evaluate_transfer(args):
    spec = _placed({"batch_size": args.batch_size}, args)
    stages.evaluate_transfer(args.checkpoint, args.crafted, args.out, spec)


def _table_spec(args):
    if args.spec:
        return _json(args.spec, "--spec")
    from soften.config import table_spec

    if not args.experiment:
        raise ConfigError("give --spec JSON, or --configfile FILE with --experiment NAME")
    return table_spec(_load(args), args.experiment)


def cmd_tables(args):
    print(stages.tables(args.inputs, _table_spec(args), args.out))


def cmd_figures(args):
    print(stages.figures(args.inputs, _table_spec(args), args.out))


def cmd_show_config(args):
    from soften.show import show_config

    print(show_config(_configfiles(args) or ["config/config.yaml"], _overrides(args), run=args.run,
                      experiment=args.experiment), end="")


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
        if name in ("evaluate", "evaluate_attack"):
            s.add_argument("--attack", help="with --configfile: attack name(s) under evaluation.attacks, comma-separated")
        s.add_argument("--out", required=True, nargs="+" if many else 1,
                       help="output JSON" + (" per checkpoint (and attack), checkpoint-major" if many else ""))
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

    for name, helptext, func in (("tables", "one experiment's table (.md, .csv, .tex)", cmd_tables),
                                 ("figures", "one experiment's figure (.png)", cmd_figures)):
        s = _sub(sub, name, helptext, func)
        s.add_argument("inputs", nargs="+", help="the experiment's result JSON / history.csv files")
        s.add_argument("--spec", help="the experiment's table spec as JSON (what Snakemake passes)")
        _add_config_args(s)
        s.add_argument("--experiment", help="with --configfile: the experiment's name")
        s.add_argument("--out", required=True, help="output .md (tables; .csv and .tex beside it) or .png (figures)")

    s = _sub(sub, "show-config", "print an experiment file fully resolved, or one run's spec, with where each value "
             "comes from", cmd_show_config, "show_config")
    _add_config_args(s)
    s.add_argument("--run", help="DATASET/NOISE/ARCH/METHOD/seedK: print that run's resolved spec")
    s.add_argument("--experiment", help="print the runs of that experiment")
    return p


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from soften.lifetime import clean_exit_on_sigterm, end_with_snakemake

    end_with_snakemake()  # a job killed Snakemake leaves behind stops too (see soften.lifetime)
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
