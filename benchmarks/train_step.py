"""Benchmarks for the training hot path. Prints a table and writes JSON.

    python benchmarks/train_step.py [--device cpu|cuda] [--out results/benchmarks/train_step.json]

Measures, on the chosen device:
1. batch augmentation (random crop + flip) on device tensors vs torchvision's
   per-image transforms through a DataLoader (the design choice in soften.data);
2. one PGD-AT training step (PGD-10 + forward/backward/SGD) for the small CNN
   on 8x8 digits and for PreActResNet-18 on 32x32 inputs, in fp32 and, on
   CUDA, under bf16 autocast (soften's default there).
Numbers are medians over repeats after a warm-up. Performance claims in the
docs come from this script's output, never from timed assertions in tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from soften.attacks import model_mode, pgd
from soften.data import augment_batch
from soften.models import build_model
from soften.training.speed import autocast_context


def timeit(fn, device, repeats=5, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_augment(device, n=4096):
    import numpy as np
    from torchvision import transforms

    x_u8 = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device)
    g = torch.Generator().manual_seed(0)
    ours = timeit(lambda: augment_batch(x_u8.float().div(255), crop_padding=4, flip=True, generator=g), device)

    images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    tf = transforms.Compose([transforms.ToPILImage(), transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor()])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return tf(images[i])

    loader = torch.utils.data.DataLoader(DS(), batch_size=512, num_workers=0)

    def per_image():
        for b in loader:
            b.to(device)

    theirs = timeit(per_image, device, repeats=2, warmup=1)
    return {"images": n, "device_batch_s": ours, "torchvision_per_image_s": theirs,
            "speedup": theirs / ours}


def bench_step(device, arch, shape, batch, amp):
    torch.manual_seed(0)
    c = shape[0]
    model = build_model(arch, num_classes=10, in_channels=c, mean=[0.5] * c, std=[0.25] * c).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with autocast_context(device, amp):
            with model_mode(model, train=True):
                x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10)
            loss = F.cross_entropy(model(x_adv).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    s = timeit(step, device, repeats=3 if device.type == "cpu" else 10)
    return {"arch": arch, "input": list(shape), "batch": batch, "amp": amp, "step_s": s, "images_per_s": batch / s}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="results/benchmarks/train_step.json")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    result = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
              "cpu_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    result["augment"] = bench_augment(device)
    amps = ["off", "bf16"] if device.type == "cuda" else ["off"]
    big_batch = 128 if device.type == "cuda" else 16
    result["pgd_at_step"] = [bench_step(device, "cnn", (1, 8, 8), 64, a) for a in amps] + \
                            [bench_step(device, "preactresnet18", (3, 32, 32), big_batch, a) for a in amps]
    a = result["augment"]
    print(f"device {result['device']} ({result['gpu'] or 'CPU, 1 thread'}), torch {result['torch']}")
    print(f"augment {a['images']} images: device batch {a['device_batch_s']*1e3:.1f} ms, "
          f"torchvision per-image loader {a['torchvision_per_image_s']*1e3:.1f} ms ({a['speedup']:.0f}x)")
    for r in result["pgd_at_step"]:
        print(f"PGD-AT step {r['arch']:>15} batch {r['batch']:>3} amp {r['amp']:>4}: "
              f"{r['step_s']*1e3:8.1f} ms  ({r['images_per_s']:.0f} img/s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
