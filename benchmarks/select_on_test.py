"""What ``training.select_on: [validation, test]`` costs per epoch (best_test.pt, as the authors' code selects).

    python benchmarks/select_on_test.py [--arch cnn] [--epochs 1] [--train-images 2000] [--threads 1]
                                        [--out results/benchmarks/select_on_test.json]

Trains PGD-AT on the shared CIFAR-10 subset (``cifar10-mini``: the first
``--train-images`` of its 9,000 training images after a 1,000-image validation split;
its 2,000 test images) through the real ``soften.training.loop.train`` with test
selection on, and prints per epoch the wall seconds of the epoch (training steps +
monitoring of 3 x 1,000 images + selection), and of the whole-test-set PGD-10 that
selection adds. The numbers in docs/evaluation.md come from its output.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from soften.pipeline.config import TRAINING_DEFAULTS
from soften.data import fetch_dataset
from soften.io import save_json
from soften.pipeline.stages import noise as make_noise
from soften.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/benchmarks/select_on_test.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "cifar10-mini.npz"
        fetch_dataset("cifar10-mini", {"val_size": 1000, "val_seed": 0, "subset": {"train": args.train_images}}, npz)
        noise = Path(tmp) / "none.npz"
        make_noise(npz, "none", 0, noise)
        spec = {"dataset": "cifar10-mini", "noise": "none", "arch": args.arch, "method": "pgd-at", "seed": 0,
                "dataset_npz": str(npz), "noise_npz": str(noise), "device": "cpu", "threads": args.threads,
                "training": {**TRAINING_DEFAULTS, "epochs": args.epochs, "lr_milestones": [],
                             "select_on": ["validation", "test"]},
                "threat": {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10},
                "augment": {"crop_padding": 4, "flip": True}, "method_params": {}}
        history = train(spec, Path(tmp) / "run", progress=False)
    rows = [{"epoch": h["epoch"], "epoch_s": h["seconds"], "select_s": h["select_test_seconds"],
             "extra": h["select_test_seconds"] / (h["seconds"] - h["select_test_seconds"])} for h in history]
    print(f"{args.arch}, PGD-AT, cifar10-mini ({args.train_images} train / 1,000 val / 2,000 test), "
          f"{args.threads} thread(s)")
    print("| epoch | epoch s (all) | test selection s | extra |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['epoch']} | {r['epoch_s']:.1f} | {r['select_s']:.1f} | +{100 * r['extra']:.0f}% |")
    save_json({"arch": args.arch, "threads": args.threads, "torch": torch.__version__, "cpu": platform.processor(),
               "rows": rows}, Path(args.out))


if __name__ == "__main__":
    main()
