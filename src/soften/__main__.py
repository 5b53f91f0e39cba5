"""Command line: ``python -m soften STAGE ...`` (fetch, noise, train, evaluate,
calibrate, sanity, craft-transfer, evaluate-transfer, tables, plots).

Each stage can take its settings from the config file (``--config``) or, as
Snakemake does, as a resolved JSON spec (``--spec``), so both routes run the
very same settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from soften.config import (ConfigError, load_config, resolve_calibration, resolve_eval, resolve_run, resolve_sanity,
                           resolve_transfer)


def _spec(args, resolver):
    if args.spec:
        return json.loads(args.spec)
    if not args.config:
        raise ConfigError("give either --spec JSON or --config FILE")
    return resolver(load_config(args.config))


def cmd_fetch(args):
    from soften.data import fetch_dataset

    if args.entry:
        entry = json.loads(args.entry)
    elif args.config:
        cfg = load_config(args.config)
        if args.dataset not in cfg["datasets"]:
            raise ConfigError(f"dataset {args.dataset!r} has no entry under 'datasets' in {args.config}")
        entry = cfg["datasets"][args.dataset]
    else:
        raise ConfigError("give either --entry JSON or --config FILE")
    options = {**entry.get("options", {}), "val_size": entry["val_size"], "val_seed": entry["val_seed"]}
    # Downloads are cached (verified, renamed into place only when complete) in
    # --download-dir, else the dataset's options, else beside the datasets folder:
    # resources/datasets/x.npz -> resources/downloads.
    if args.download_dir:
        options["download_dir"] = args.download_dir
    options.setdefault("download_dir", str(Path(args.out).parent.parent / "downloads"))
    meta = fetch_dataset(entry["source"], options, args.out)
    print(json.dumps({k: meta[k] for k in ("dataset", "splits", "sha256")}))


def cmd_noise(args):
    from soften.stages import make_noise

    print(json.dumps(make_noise(args.dataset_npz, args.noise, args.seed, args.out)))


def cmd_train(args):
    from soften.training.loop import train

    spec = _spec(args, lambda cfg: resolve_run(cfg, args.dataset, args.noise, args.arch, args.method, args.seed))
    train(spec, args.out, stop_after_epoch=args.stop_after_epoch)


def cmd_evaluate(args):
    from soften.evaluation import evaluate_checkpoint

    spec = _spec(args, lambda cfg: resolve_eval(cfg, args.dataset, args.attack))
    # A JSON list of specs evaluates several attacks in one process, one --out each.
    specs = spec if isinstance(spec, list) else [spec]
    if len(specs) != len(args.out):
        raise ConfigError(f"give one --out per attack spec ({len(specs)} specs, {len(args.out)} outputs)")
    for one, out in zip(specs, args.out):
        evaluate_checkpoint(args.checkpoint, args.dataset_npz, one, out)


def _pairs(args):
    if len(args.checkpoint) != len(args.out):
        raise ConfigError(f"give one --out per --checkpoint ({len(args.checkpoint)} checkpoints, {len(args.out)} outputs)")
    return zip(args.checkpoint, args.out)


def cmd_calibrate(args):
    from soften.evaluation import calibrate_checkpoint

    spec = _spec(args, lambda cfg: resolve_calibration(cfg, args.dataset))
    for checkpoint, out in _pairs(args):
        calibrate_checkpoint(checkpoint, args.dataset_npz, spec, out)


def cmd_sanity(args):
    from soften.evaluation import sanity_checkpoint

    spec = _spec(args, lambda cfg: resolve_sanity(cfg, args.dataset))
    for checkpoint, out in _pairs(args):
        sanity_checkpoint(checkpoint, args.dataset_npz, spec, out)


def cmd_craft_transfer(args):
    from soften.evaluation import craft_transfer

    spec = _spec(args, lambda cfg: resolve_transfer(cfg, args.dataset, args.source, args.attack))
    print(json.dumps(craft_transfer(args.checkpoint, args.dataset_npz, spec, args.out)))


def cmd_evaluate_transfer(args):
    from soften.evaluation import evaluate_transfer

    spec = json.loads(args.spec) if args.spec else {"batch_size": args.batch_size, "device": args.device, "threads": 1}
    if args.jobs:
        jobs = json.loads(args.jobs)
    elif args.checkpoint and args.crafted and args.out:
        jobs = [{"checkpoint": args.checkpoint, "crafted": args.crafted, "out": args.out}]
    else:
        raise ConfigError("give --jobs JSON or all of --checkpoint, --crafted, --out")
    for job in jobs:
        evaluate_transfer(job["checkpoint"], job["crafted"], spec, job["out"])


def cmd_tables(args):
    from soften.tables import make_tables

    order = args.methods.split(",") if args.methods else None
    attacks = args.attacks.split(",") if args.attacks else None
    md = make_tables(args.inputs, args.out_dir, method_order=order, attack_order=attacks,
                     transfer_order=args.transfer_attacks.split(",") if args.transfer_attacks else None)
    print(md)


def cmd_plots(args):
    from soften.plots import collect_histories, plot_curves

    order = args.methods.split(",") if args.methods else None
    for path in plot_curves(collect_histories(args.inputs), args.out_dir, order):
        print(path)


def cmd_reliability(args):
    from soften.plots import collect_calibration, plot_reliability

    for path in plot_reliability(collect_calibration(args.inputs), args.out_dir):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m soften", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="stage", required=True)

    s = sub.add_parser("fetch", help="materialise a dataset as one npz + JSON sidecar")
    s.add_argument("--config", help="config file (the dataset's entry is read from it)")
    s.add_argument("--entry", help="the dataset's validated config entry as JSON (what Snakemake passes)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True, help="output .npz path")
    s.add_argument("--download-dir", help="download cache (default: ../downloads beside the output's folder)")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("noise", help="inject label noise into the training labels")
    s.add_argument("--dataset-npz", required=True)
    s.add_argument("--noise", required=True, help="'none' or KIND-RATE, e.g. symmetric-0.4")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_noise)

    s = sub.add_parser("train", help="train (or resume) one run")
    s.add_argument("--spec", help="resolved run spec as JSON (what Snakemake passes)")
    s.add_argument("--config")
    for name in ("dataset", "noise", "arch", "method"):
        s.add_argument(f"--{name}")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="run directory")
    s.add_argument("--stop-after-epoch", type=int, default=None, help="stop after this epoch's checkpoint")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate one checkpoint under one attack")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--dataset-npz", required=True)
    s.add_argument("--spec")
    s.add_argument("--config")
    s.add_argument("--dataset")
    s.add_argument("--attack")
    s.add_argument("--out", required=True, nargs="+", help="one JSON path per attack spec")
    s.set_defaults(func=cmd_evaluate)

    for name, helptext, func in (("calibrate", "ECE and reliability data of checkpoints", cmd_calibrate),
                                 ("sanity", "gradient-masking sanity checks of checkpoints", cmd_sanity)):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--checkpoint", required=True, nargs="+")
        s.add_argument("--dataset-npz", required=True)
        s.add_argument("--spec")
        s.add_argument("--config")
        s.add_argument("--dataset")
        s.add_argument("--out", required=True, nargs="+", help="one JSON per checkpoint, in the same order")
        s.set_defaults(func=func)

    s = sub.add_parser("craft-transfer", help="craft a black-box transfer set on a source checkpoint")
    s.add_argument("--checkpoint", required=True, help="source checkpoint")
    s.add_argument("--dataset-npz", required=True)
    s.add_argument("--spec")
    s.add_argument("--config")
    s.add_argument("--dataset")
    s.add_argument("--source")
    s.add_argument("--attack")
    s.add_argument("--out", required=True, help="output .pt")
    s.set_defaults(func=cmd_craft_transfer)

    s = sub.add_parser("evaluate-transfer", help="evaluate target checkpoints on crafted transfer sets")
    s.add_argument("--checkpoint", help="target checkpoint")
    s.add_argument("--crafted", help="transfer set from craft-transfer")
    s.add_argument("--out")
    s.add_argument("--jobs", help='JSON list of {"checkpoint", "crafted", "out"} (what Snakemake passes)')
    s.add_argument("--spec")
    s.add_argument("--batch-size", type=int, default=512)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_evaluate_transfer)

    s = sub.add_parser("tables", help="gather evaluation JSON into tables")
    s.add_argument("inputs", nargs="+", help="evaluation JSON files or directories to search")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--methods", help="comma-separated row order")
    s.add_argument("--attacks", help="comma-separated column order")
    s.add_argument("--transfer-attacks", help="comma-separated column order of transfer attacks")
    s.set_defaults(func=cmd_tables)
    s = sub.add_parser("plots", help="learning-curve figures from history.csv files")
    s.add_argument("inputs", nargs="+", help="history.csv files or directories to search")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--methods", help="comma-separated legend order")
    s.set_defaults(func=cmd_plots)

    s = sub.add_parser("reliability", help="reliability diagrams from calibration JSON files")
    s.add_argument("inputs", nargs="+", help="calibration JSON files or directories to search")
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_reliability)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args.func(args)
    except (ConfigError, ValueError, OSError, RuntimeError) as err:
        print(f"soften {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
