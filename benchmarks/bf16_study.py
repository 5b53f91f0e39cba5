"""Does bf16 autocast change PGD-AT's robustness? fp32 against bf16, same seeds, same data.

    python benchmarks/bf16_study.py [--quick] [--out DIR] [--device auto] [--seeds 0 1]
                                    [--epochs 30] [--data ../shared/data/cifar10-jpeg-subset-10k-2k.npz]

PGD-AT (PGD-10, eps 8/255, step 2/255) on ResNet-18, trained through soften's own loop
(``soften.training.loop.train``) on the genuine CIFAR-10 images of ``../shared/data``
(10,000 train, of which 1,000 are held out to choose Best, and 2,000 test images; JPEG
re-encoded, see that folder's README), for a short schedule (30 epochs, LR /10 at 15
and 23: the papers' shape), once with ``training.amp: off`` (fp32) and once with
``amp: bf16``, from the same seed. For each it reports the training time per epoch
(training steps only, the device synchronised; the first epoch, which pays warm-up,
left out when there are more) and natural and PGD-20 accuracy of Best (the epoch of
highest validation PGD-10 accuracy) and Final on the 2,000 test images, evaluated by
soften's evaluate stage (eval mode, fp32, TF32 off).

``--quick`` is a smoke run of the same code: 128 training images, one epoch, PGD-2
training and PGD-3 evaluation on 32 test images. Its figures estimate nothing. Its
fp32 leg takes about a CPU-minute of one thread; the bf16 leg takes far longer on a
CPU without native bf16 instructions (on the 2-core Xeon of docs/performance.md it
had not finished after 5 CPU-minutes). Each finished run is written at once
(``"complete": false`` until both precisions of every seed are done). ``--out DIR`` writes ``bf16_study.json`` (every figure, the device,
torch/CUDA versions, whether TF32 was allowed in the fp32 run's convolutions) and
``bf16_study.md``. The question stays open (docs/performance.md) until a GPU runs the
full study; a difference in Best/Final PGD-20 of the size of the seed-to-seed spread
is no evidence either way: run several seeds (``--seeds 0 1 2``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

import soften.training.loop as loop  # noqa: E402
from soften.pipeline.config import TRAINING_DEFAULTS  # noqa: E402
from soften.data import fetch_dataset  # noqa: E402
from soften.evaluation.evaluate import evaluate_checkpoint  # noqa: E402
from soften.pipeline.stages import noise as make_noise  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg-subset-10k-2k.npz"
EPS, ALPHA = 8 / 255, 2 / 255
FULL = {"train": None, "val": 1000, "test": None, "epochs": 30, "milestones": [15, 23], "batch": 128,
        "train_steps": 10, "val_steps": 10, "eval_steps": 20}
QUICK = {"train": 128, "val": 32, "test": 32, "epochs": 1, "milestones": [], "batch": 64,
         "train_steps": 2, "val_steps": 1, "eval_steps": 3}


def build_data(path: Path, sizes: dict, work: Path) -> tuple[Path, Path]:
    """The soften npz (stratified validation split, subsets) and its clean-label noise file."""
    subset = {k: sizes[k] for k in ("train", "test") if sizes[k]}
    npz = work / "cifar10-mini.npz"
    fetch_dataset("cifar10-mini", {"path": str(path), "val_size": sizes["val"], "val_seed": 0,
                                   **({"subset": subset} if subset else {})}, npz)
    noise = work / "none.npz"
    make_noise(npz, "none", 0, noise)
    return npz, noise


def run_spec(npz: Path, noise: Path, sizes: dict, amp: str, seed: int, device: str) -> dict:
    return {
        "dataset": "cifar10-mini", "noise": "none", "arch": "resnet18", "method": "pgd-at", "seed": seed,
        "dataset_npz": str(npz), "noise_npz": str(noise), "device": device, "threads": torch.get_num_threads(),
        "training": {**TRAINING_DEFAULTS, "epochs": sizes["epochs"], "lr_milestones": sizes["milestones"],
                     "batch_size": sizes["batch"], "val_attack_steps": sizes["val_steps"], "test_subset": sizes["test"],
                     "monitor_every": sizes["epochs"], "amp": amp, "optimizer_kernel": "loop"},
        "threat": {"eps": EPS, "alpha": ALPHA, "steps": sizes["train_steps"]},
        "augment": {"crop_padding": 4, "flip": True},
        "method_params": {},
    }


def timed_training(spec: dict, out: Path) -> tuple[list[dict], list[float]]:
    """Train, timing each epoch's optimizer steps alone (the device synchronised)."""
    seconds = []
    real = loop.train_epoch

    def timed(run, epoch, show):
        sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        stats = real(run, epoch, show)
        sync()
        seconds.append(time.perf_counter() - start)
        return stats

    loop.train_epoch = timed
    try:
        history = loop.train(spec, out, progress=False)
    finally:
        loop.train_epoch = real
    return history, seconds


def evaluate(run_dir: Path, npz: Path, steps: int, device: str) -> dict:
    out = {}
    for ckpt in ("best", "final"):
        for name, params in (("natural", {"kind": "natural", "eps": EPS}),
                             (f"pgd{steps}", {"kind": "pgd", "eps": EPS, "steps": steps})):
            spec = {"attack": name, "params": params, "batch_size": 256, "n_examples": None, "device": device}
            r = evaluate_checkpoint(run_dir / f"{ckpt}.pt", npz, spec, progress=False)
            out[f"{ckpt}_{name}"] = r["accuracy"]
        out[f"{ckpt}_epoch"] = torch.load(run_dir / f"{ckpt}.pt", weights_only=True)["epoch"]
        out["n_test"] = r["n"]
    return out


def machine(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        info["device_name"] = info["cpu"]
    return info


def summarise(runs: list[dict], steps: int) -> dict:
    out = {}
    for amp in ("off", "bf16"):
        rs = [r for r in runs if r["amp"] == amp]
        row = {"s_per_epoch": statistics.mean(s for r in rs for s in r["epoch_s_timed"])}
        for key in ("best_natural", f"best_pgd{steps}", "final_natural", f"final_pgd{steps}"):
            row[key] = statistics.mean(r[key] for r in rs)
        out["fp32" if amp == "off" else "bf16"] = row
    out["bf16_minus_fp32"] = {k: out["bf16"][k] - out["fp32"][k] for k in out["fp32"] if k != "s_per_epoch"}
    out["bf16_time_ratio"] = out["bf16"]["s_per_epoch"] / out["fp32"]["s_per_epoch"]
    return out


def markdown(result: dict) -> str:
    m, s, steps = result["machine"], result["summary"], result["settings"]["eval_steps"]
    lines = [f"# bf16 vs fp32 PGD-AT (ResNet-18, CIFAR-10 JPEG subset){' - QUICK: estimates nothing' if result['quick'] else ''}",
             "", f"Device: {m['device_name']} ({m['device']}), torch {m['torch']}, CUDA {m['cuda']}; "
             f"fp32 run's TF32 convolutions allowed: {result['tf32_in_fp32_training']}. Seeds: {result['seeds']}. "
             f"{result['settings']['n_train']} training images, {result['settings']['epochs']} epochs, "
             f"PGD-{result['settings']['train_steps']} training, PGD-{steps} evaluation on {result['settings']['n_test']} "
             "test images.", "",
             f"| precision | s/epoch (training) | Best natural | Best PGD-{steps} | Final natural | Final PGD-{steps} |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in ("fp32", "bf16"):
        r = s[name]
        lines.append(f"| {name} | {r['s_per_epoch']:.2f} | {100 * r['best_natural']:.2f} | {100 * r[f'best_pgd{steps}']:.2f} "
                     f"| {100 * r['final_natural']:.2f} | {100 * r[f'final_pgd{steps}']:.2f} |")
    d = s["bf16_minus_fp32"]
    lines.append(f"| bf16 - fp32 | x{s['bf16_time_ratio']:.2f} | {100 * d['best_natural']:+.2f} | "
                 f"{100 * d[f'best_pgd{steps}']:+.2f} | {100 * d['final_natural']:+.2f} | {100 * d[f'final_pgd{steps}']:+.2f} |")
    lines += ["", "Per run:", ""]
    for r in result["runs"]:
        lines.append(f"- seed {r['seed']} amp {r['amp']}: {', '.join(f'{e:.2f}' for e in r['epoch_s'])} s/epoch; "
                     f"best epoch {r['best_epoch']}; Best PGD-{steps} {100 * r[f'best_pgd{steps}']:.2f}, "
                     f"Final {100 * r[f'final_pgd{steps}']:.2f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (CPU, about a minute); estimates nothing")
    ap.add_argument("--out", type=Path, default=None, help="write bf16_study.json and bf16_study.md into DIR")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:K")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=None, help="override the schedule's length (milestones at 50%%/75%%)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"bf16_study: {args.data} does not exist (the genuine CIFAR-10 subset; see ../shared/data/README.md)",
              file=sys.stderr)
        return 2
    sizes = dict(QUICK if args.quick else FULL)
    if args.epochs:
        sizes["epochs"], sizes["milestones"] = args.epochs, [args.epochs // 2, (3 * args.epochs) // 4]
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    if device == "cpu":
        torch.set_num_threads(1 if args.quick else torch.get_num_threads())
    tf32 = device.startswith("cuda") and torch.backends.cudnn.allow_tf32   # PyTorch's default, as the papers' code ran
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bf16_study-") as tmp:
        work = Path(tmp)
        npz, noise = build_data(args.data, sizes, work)
        runs = []
        for seed in args.seeds:
            for amp in ("off", "bf16"):
                torch.backends.cudnn.allow_tf32 = tf32   # evaluation switches TF32 off; training keeps the default
                out = work / f"seed{seed}-{amp}"
                history, seconds = timed_training(run_spec(npz, noise, sizes, amp, seed, device), out)
                result = evaluate(out, npz, sizes["eval_steps"], device)
                runs.append({"seed": seed, "amp": amp, "epoch_s": [round(s, 3) for s in seconds],
                             "epoch_s_timed": seconds[1:] if len(seconds) > 1 else seconds,
                             "best_epoch": result["best_epoch"], "train_loss_last": history[-1]["train_loss"],
                             **result})
                if args.out:   # a killed study keeps the runs it finished
                    args.out.mkdir(parents=True, exist_ok=True)
                    (args.out / "bf16_study.json").write_text(json.dumps(
                        {"complete": False, "quick": args.quick, "machine": machine(torch.device(device)),
                         "settings": sizes, "runs": runs}, indent=1, default=float) + "\n")
                pgd = f"pgd{sizes['eval_steps']}"
                print(f"seed {seed} amp {amp}: {statistics.mean(seconds):.2f} s/epoch, best epoch {result['best_epoch']}, "
                      f"Best {pgd} {result['best_' + pgd]:.4f}, Final {result['final_' + pgd]:.4f}", flush=True)
    result = {
        "study": "bf16 vs fp32 PGD-AT ResNet-18", "complete": True, "quick": args.quick, "seeds": args.seeds,
        "machine": machine(torch.device(device)), "tf32_in_fp32_training": bool(tf32),
        "data": {"path": str(args.data)},
        "settings": {**sizes, "n_train": sizes["train"] or 10_000 - sizes["val"], "n_test": runs[0]["n_test"],
                     "eps": EPS, "alpha": ALPHA},
        "runs": runs, "summary": summarise(runs, sizes["eval_steps"]), "wall_s": round(time.time() - started, 1),
    }
    md = markdown(result)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bf16_study.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
        (args.out / "bf16_study.md").write_text(md)
        print(f"wrote {args.out / 'bf16_study.json'} and {args.out / 'bf16_study.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
