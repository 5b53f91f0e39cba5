"""soften's PGD-AT training step and PGD-20 evaluation beside plain PyTorch + torchattacks.

    python benchmarks/vs_torchattacks.py [--threads 1 2] [--rounds 15] [--out benchmarks/results/vs_torchattacks.json]

Side by side in one process, round-robin (soften, plain, plain, soften, ...), so
both see the same CPU contention and neither always goes first; the figure is the median of the per-round
ratios soften / plain (> 1: soften slower). A regression of soften's hot path
shows as a ratio above ~1.05. Also per-method step cost over PGD-AT
(soften.tools.bench.bench_overheads) for the same shapes.

Plain loop: ``torchattacks.PGD(model, eps, alpha, steps, random_start=True)`` in
train mode (``set_model_training_mode(True, True)``; torchattacks' default is eval mode), then ``F.cross_entropy(model(x_adv), y)``, backward, SGD step: what
a researcher would write without soften. soften: soften.training.loop.train_step
with the pgd-at objective, hard-label refiner, as the training loop runs it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from soften.attacks import model_mode, pgd
from soften.tools.bench import DIGITS, THREAT, _model, bench_overheads, machine, make_step, timed

SHAPES = {  # name -> (arch, input shape, batch, threat)
    "digits-cnn": ("cnn", DIGITS["shape"], DIGITS["batch"], DIGITS["threat"]),
    "preactresnet18": ("preactresnet18", (3, 32, 32), 16, THREAT),
}


def plain_step(arch, shape, batch, threat, device):
    import torchattacks

    torch.manual_seed(0)
    model = _model(arch, device, in_channels=shape[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    attack = torchattacks.PGD(model, eps=threat["eps"], alpha=threat["alpha"], steps=threat["steps"], random_start=True)
    # torchattacks attacks in eval mode unless told otherwise; soften's default (attack_bn_mode: train)
    # attacks in train mode, BatchNorm included, which costs more on CPU: compare like with like.
    attack.set_model_training_mode(model_training=True, batchnorm_training=True)
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()

    def step():
        x_adv = attack(x, y)
        loss = F.cross_entropy(model(x_adv), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def eval_pair(arch, shape, batch, threat, device):
    """PGD-20 in eval mode: soften.attacks.pgd vs torchattacks.PGD on the same model."""
    import torchattacks

    model = _model(arch, device, in_channels=shape[0]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    attack = torchattacks.PGD(model, eps=threat["eps"], alpha=threat["alpha"], steps=20, random_start=True)

    def ours():
        with model_mode(model, train=False):
            pgd(model, x, y, eps=threat["eps"], alpha=threat["alpha"], steps=20)

    return ours, lambda: attack(x, y)


def side_by_side(a, b, device, rounds, warmup=2):
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for r in range(rounds):  # alternate which goes first (ABBA...), so order effects cancel
        if r % 2:
            tb.append(timed(b, device))
            ta.append(timed(a, device))
        else:
            ta.append(timed(a, device))
            tb.append(timed(b, device))
    return {"soften_s": statistics.median(ta), "plain_s": statistics.median(tb),
            "ratio": statistics.median(x / y for x, y in zip(ta, tb)), "rounds": rounds}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--no-overheads", action="store_true")
    p.add_argument("--out", default="benchmarks/results/vs_torchattacks.json")
    args = p.parse_args()
    device = torch.device(args.device)
    result = {"machine": machine(device), "rows": [], "overheads": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every measurement, so an interrupted run keeps what it measured
        out.write_text(json.dumps(result, indent=2) + "\n")

    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.shapes:
            arch, shape, batch, threat = SHAPES[name]
            rounds = args.rounds if arch == "cnn" else max(3, args.rounds // 3)
            train = side_by_side(make_step("pgd-at", arch, batch, device, shape=shape, threat=threat),
                                 plain_step(arch, shape, batch, threat, device), device, rounds)
            evaluation = side_by_side(*eval_pair(arch, shape, batch, threat, device), device, rounds)
            row = {"threads": threads, "shape": name, "batch": batch, "train_step": train, "pgd20_eval": evaluation}
            result["rows"].append(row)
            save()
            print(f"{threads} thread(s) {name:>15} b{batch}: PGD-AT step soften/plain {train['ratio']:.3f} "
                  f"({train['soften_s'] * 1e3:.1f} vs {train['plain_s'] * 1e3:.1f} ms), "
                  f"PGD-20 eval soften/torchattacks {evaluation['ratio']:.3f}", flush=True)
            if not args.no_overheads:
                ov = bench_overheads(device, arch=arch, batch=batch, rounds=rounds, shape=shape, threat=threat)
                result["overheads"].append({"threads": threads, "shape": name, **ov})
                save()
                print("   " + ", ".join(f"{m} {r['ratio']:.3f}" for m, r in ov["methods"].items() if m != "pgd-at"),
                      flush=True)
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
