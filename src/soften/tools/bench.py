"""``python -m soften bench``: what training and evaluating cost on this machine.

Detects the device and measures, on synthetic CIFAR-shaped data (3x32x32, 10
classes; no download), with soften's own training step (soften.training.loop.train_step):

- ``pgd_at``: one PGD-AT (PGD-10, eps 8/255, step 2/255) step of PreActResNet-18
  and of ResNet-18, extrapolated to seconds per 50,000-image epoch (training
  only); on CUDA under bf16 autocast (``amp: auto``) and in fp32;
- ``monitoring``: the per-epoch monitoring the loop adds (clean + PGD-10 on
  3 x 1,000 images in eval mode and fp32), reported separately;
- ``overheads``: SGLR, ADR, AWP, TRADES (and their combinations) against PGD-AT,
  timed round-robin in one process; the median of the per-round ratios
  (ratios survive CPU contention from other processes better than times);
- ``wrn``: the same PGD-AT step for WRN-34-10;
- ``autoattack``: AutoAttack standard, fp32, on a *robust probe*: ResNet-18's
  full forward/backward whose logits are a fixed, provably robust function of
  the image (every point survives every attack, so each attack spends its whole
  budget: an upper bound), timed per attack on a few hundred images (a few on
  CPU, with shortened budgets scaled back up linearly), extrapolated to the
  10,000 CIFAR-10 test images; plus the estimate for a typical robust ResNet-18
  (:data:`AA_TYPICAL_SURVIVORS`);
- ``jobs_per_gpu`` (CUDA only): aggregate ResNet-18 PGD-AT throughput with 1, 2
  and 4 training processes sharing one GPU (the workers see only the bench's
  own GPU through CUDA_VISIBLE_DEVICES, so on a multi-GPU host the figure is
  sharing, not GPU count);

Every timer synchronises the device it times; a speed option that fails (e.g.
``compile`` without a working compiler) is recorded with its error, not fatal.
- ``mini``: a real short run of an experiment file (default
  config/cifar10-mini.yaml): fetch, train, evaluate every attack of its first
  experiment, each phase timed.

Writes ``<out>/<device-slug>.json`` and ``.md``; ``python -m soften plan`` reads
the JSON. ``--quick`` shrinks every measurement to seconds (for tests; its
figures are not estimates of anything).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from soften.devices import cpu_name, device_slug

CIFAR_TRAIN = 50_000
CIFAR_TEST = 10_000
THREAT = {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10}
MONITOR_IMAGES = 3 * 1000  # val, test subset and train subset, 1,000 each (TRAINING_DEFAULTS.test_subset)
OVERHEAD_METHODS = ("pgd-at", "pgd-at+sglr", "pgd-at+adr", "pgd-at+awp", "pgd-at+adr+awp", "trades", "trades+sglr")
#: AutoAttack standard: each attack's budget (iterations x restarts/targets) and the
#: package attribute that shortens it for the CPU measurement.
AA_BUDGET = {"apgd-ce": ("apgd.n_iter", 100), "apgd-t": ("apgd_targeted.n_iter", 100),
             "fab-t": ("fab.n_iter", 100), "square": ("square.n_queries", 5000)}
#: Fraction of the test set each attack still runs on for a typical robust CIFAR-10
#: ResNet-18 (PGD-AT: ~84% clean, ~52% after APGD-CE, ~49% robust at the end;
#: e.g. SGLR Tab. 2, ADR Tab. 2). An assumption used only for the "typical" estimate.
AA_TYPICAL_SURVIVORS = {"apgd-ce": 0.84, "apgd-t": 0.52, "fab-t": 0.49, "square": 0.49}

#: Sizes per mode: batch sizes, repeats. CPU batches are small and extrapolated per image.
#: ``arch``: the model of every figure except WRN (quick: the small CNN, so a test takes seconds);
#: ``cnn_rounds``: extra overhead rounds on the digits CNN (8x8, batch 64), cheap enough for many rounds.
SIZES = {
    "cuda": {"arch": "preactresnet18", "batch": 128, "repeats": 20, "warmup": 5, "rounds": 10, "cnn_rounds": 0,
             "wrn_batch": 128, "wrn_repeats": 5, "monitor_images": 1000, "eval_batch": 1024,
             "aa_images": 500, "aa_budget_scale": 1.0, "job_steps": 30},
    "cpu": {"arch": "preactresnet18", "batch": 8, "repeats": 3, "warmup": 1, "rounds": 6, "cnn_rounds": 30,
            "wrn_batch": 2, "wrn_repeats": 1, "monitor_images": 16, "eval_batch": 16,
            "aa_images": 4, "aa_budget_scale": 0.05, "job_steps": 0},
    "quick": {"arch": "cnn", "batch": 4, "repeats": 1, "warmup": 1, "rounds": 2, "cnn_rounds": 2,
              "wrn_batch": 0, "wrn_repeats": 0, "monitor_images": 4, "eval_batch": 4,
              "aa_images": 2, "aa_budget_scale": 0.01, "job_steps": 0},
}


# ------------------------------------------------------------------ the machine

def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def machine(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device), "device_name": device_name(device), "device_slug": device_slug(device_name(device)),
        "torch": torch.__version__, "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": _describe(device),
    }


def _describe(device: torch.device) -> str | None:
    """The GPU's one-line description (soften.devices: name, index, compute capability, driver)."""
    if device.type != "cuda":
        return None
    from soften.devices import describe_gpu

    return describe_gpu(device.index if device.index is not None else torch.cuda.current_device())


def _sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` itself (a bare ``cuda`` means the process's current GPU,
    which soften.devices sets to the claimed one), so a timer never stops before the GPU does."""
    if device.type == "cuda":
        torch.cuda.synchronize(device if device.index is not None else torch.cuda.current_device())


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def median_time(fn, device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device) for _ in range(max(1, repeats)))


# ------------------------------------------------------------------ training steps

def _model(arch: str, device: torch.device, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    from soften.models import build_model

    return build_model(arch, num_classes=num_classes, in_channels=in_channels,
                       mean=[0.5] * in_channels, std=[0.25] * in_channels).to(device)


def make_step(method: str, arch: str, batch: int, device: torch.device, *, amp: str = "auto",
              shape: tuple[int, int, int] = (3, 32, 32), seed: int = 0, threat: dict[str, Any] = THREAT,
              options: dict[str, Any] | None = None) -> Callable[[], None]:
    """A closure running one training step of ``method`` exactly as the loop does, on a fixed synthetic batch."""
    from soften.labels import Batch, Setup, build_refiner
    from soften.training.extras import build_extra
    from soften.training.loop import train_step
    from soften.training.methods import method_params, parse_method
    from soften.training.objectives import build_objective
    from soften.training.speed import autocast_context, optimizer_options, prepare_model

    torch.manual_seed(seed)
    spec = parse_method(method)
    params = method_params(method, {})
    options = {"optimizer_kernel": "auto", **(options or {})}
    amp = options.get("amp", amp)
    model = prepare_model(_model(arch, device, in_channels=shape[0]), options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                                **optimizer_options(device, options))
    objective = build_objective(spec.objective, params[spec.objective], threat, True)
    refiner = build_refiner(spec.refiner, params[spec.refiner],
                            Setup(num_samples=batch, num_classes=10, model=model, device=device))
    extras = [build_extra(name, params[name], model) for name in spec.extras]
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    index = torch.arange(batch, device=device)
    counter = [0]
    model.train()

    def step():
        counter[0] += 1
        b = Batch(model=model, index=index, x=x, y=y, epoch=1, iteration=counter[0], total_iterations=10_000)
        train_step(b, objective=objective, refiner=refiner, extras=extras, optimizer=optimizer,
                   autocast=autocast_context(device, amp))

    return step


def step_figures(step_s: float, batch: int, images: int = CIFAR_TRAIN) -> dict[str, float]:
    per_image = step_s / batch
    return {"batch": batch, "step_s": step_s, "images_per_s": batch / step_s, "s_per_epoch": per_image * images}


def bench_pgd_at(device, sizes, archs=("preactresnet18", "resnet18")) -> list[dict[str, Any]]:
    amps = ["auto", "off"] if device.type == "cuda" else ["off"]
    out = []
    for arch in archs:
        for amp in amps:
            step = make_step("pgd-at", arch, sizes["batch"], device, amp=amp)
            s = median_time(step, device, sizes["repeats"], sizes["warmup"])
            out.append({"arch": arch, "amp": amp, **step_figures(s, sizes["batch"])})
    return out


def _round_robin(steps: dict[str, Callable[[], None]], rounds: int, device) -> dict[str, list[float]]:
    """Time every step once per round, the order rotating each round so that no step always runs first."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(steps[name], device))
    return times


#: The digits demo's shape and threat (config/config.yaml): the second, cheap overhead measurement.
DIGITS = {"shape": (1, 8, 8), "batch": 64, "threat": {"eps": 0.1, "alpha": 0.025, "steps": 10}}


def bench_overheads(device, *, arch: str, batch: int, rounds: int, warmup: int = 1, methods=OVERHEAD_METHODS,
                    shape=(3, 32, 32), threat=THREAT) -> dict[str, Any]:
    """Per-method step time over PGD-AT's, round-robin in one process: median of per-round ratios."""
    steps = {m: make_step(m, arch, batch, device, shape=shape, threat=threat) for m in methods}
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = _round_robin(steps, rounds, device)
    base = times["pgd-at"]
    return {"arch": arch, "input": list(shape), "batch": batch, "rounds": rounds,
            "methods": {m: {"step_s": statistics.median(t),
                            "ratio": statistics.median(a / b for a, b in zip(t, base))} for m, t in times.items()}}


def bench_options(device, *, arch: str, batch: int, rounds: int, warmup: int = 1, shape=(3, 32, 32),
                  threat=THREAT) -> dict[str, Any]:
    """The speed options (soften.training.speed) against the device's default step, round-robin:
    median per-round ratio (< 1: faster). On CUDA the default is bf16 autocast; on CPU fp32."""
    if device.type == "cuda":
        variants = {"default (bf16)": {}, "fp32": {"amp": "off"}, "channels_last": {"channels_last": True},
                    "compile": {"compile": True}, "channels_last+compile": {"channels_last": True, "compile": True}}
    else:
        variants = {"default (fp32)": {}, "bf16": {"amp": "bf16"}, "channels_last": {"channels_last": True},
                    "bf16+channels_last": {"amp": "bf16", "channels_last": True}}
    steps, failed = {}, {}
    for name, opts in variants.items():
        try:
            fn = make_step("pgd-at", arch, batch, device, options=opts, shape=shape, threat=threat)
            for _ in range(warmup + (3 if device.type == "cuda" else 0)):  # compiled variants compile here
                fn()
            steps[name] = fn
        except Exception as err:  # noqa: BLE001 - e.g. no compiler for inductor: recorded, the others still run
            if name == next(iter(variants)):
                raise  # the baseline itself: nothing to compare against
            failed[name] = {"options": opts, "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
                            if str(err).strip() else type(err).__name__}
    times = _round_robin(steps, rounds, device)
    base = times[next(iter(steps))]
    measured = {name: {"options": variants[name], "step_s": statistics.median(t),
                       "ratio": statistics.median(a / b for a, b in zip(t, base))} for name, t in times.items()}
    return {"arch": arch, "input": list(shape), "batch": batch, "rounds": rounds,
            "variants": {name: measured.get(name) or failed[name] for name in variants if name in measured or name in failed}}


def bench_monitoring(device, sizes, arch: str) -> dict[str, Any]:
    """The loop's per-epoch monitoring (soften.training.loop.evaluate_split), per image, scaled to 3 x 1,000."""
    from soften.data import DeviceData
    from soften.training.loop import evaluate_split

    model = _model(arch, device)
    n = sizes["monitor_images"]
    data = DeviceData(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device),
                      torch.randint(0, 10, (n,), device=device))
    s = median_time(lambda: evaluate_split(model, data, eps=THREAT["eps"], alpha=THREAT["alpha"], steps=10,
                                           batch_size=sizes["eval_batch"]), device, max(1, sizes["repeats"] // 2), 1)
    return {"arch": arch, "images": n, "seconds": s, "s_per_epoch": s / n * MONITOR_IMAGES,
            "monitored_images": MONITOR_IMAGES}


# ------------------------------------------------------------------ AutoAttack

class RobustProbe(nn.Module):
    """ResNet-18's full cost with logits no L-inf attack of radius ``eps`` can change:
    class k scores -(mean(x) - c_k)^2 for grey levels c_k spaced 2.5 eps apart, and the
    probe images are uniform grey at those levels, so the mean moves by at most eps
    and stays nearest its own level. ``0 * resnet(x)`` keeps the network's whole
    forward and backward in every call."""

    def __init__(self, device, eps: float, classes: int = 10, arch: str = "resnet18"):
        super().__init__()
        self.net = _model(arch, device, num_classes=classes)
        self.register_buffer("levels", 0.5 + 2.5 * eps * (torch.arange(classes, device=device) - (classes - 1) / 2))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))[:, None]
        return -1000.0 * (m - self.levels) ** 2 + 0.0 * self.net(x)

    def images(self, n: int, generator: torch.Generator):
        y = torch.randint(0, len(self.levels), (n,), generator=generator).to(self.levels.device)
        x = self.levels[y].view(n, 1, 1, 1).expand(n, 3, 32, 32).clone()
        return x, y


def largest_batch(model: nn.Module, device: torch.device, limit: int) -> int:
    """The largest power-of-two batch up to ``limit`` whose input-gradient pass fits in memory."""
    if device.type != "cuda":
        return limit
    b = 1 << max(0, int(math.log2(limit)))
    while b > 1:
        try:
            x = torch.rand(b, 3, 32, 32, device=device, requires_grad=True)
            model(x).sum().backward()
            del x
            torch.cuda.empty_cache()
            return b
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            b //= 2
    return 1


def bench_autoattack(device, sizes) -> dict[str, Any]:
    from soften.evaluation.autoattack import autoattack

    arch = "cnn" if sizes["arch"] == "cnn" else "resnet18"
    probe = RobustProbe(device, THREAT["eps"], arch=arch).eval()
    for p in probe.parameters():
        p.requires_grad_(False)
    n, scale = sizes["aa_images"], sizes["aa_budget_scale"]
    x, y = probe.images(n, torch.Generator().manual_seed(0))
    settings = {attr: max(1, round(full * scale)) for attr, full in AA_BUDGET.values()} if scale < 1 else {}
    batch = largest_batch(probe, device, 8192) if device.type == "cuda" else n
    result = autoattack(probe, x, y, eps=THREAT["eps"], version="standard", batch_size=batch, settings=settings)
    if result["robust_accuracy"] != 1.0:
        raise RuntimeError(f"the AutoAttack robust probe lost points ({result['counts']}): its timings are no upper bound")
    per_image = {}
    for attack, (attr, full) in AA_BUDGET.items():
        used = settings.get(attr, full)
        per_image[attack] = result["seconds"][attack] / n * full / used
    worst = sum(per_image.values()) * CIFAR_TEST
    typical = sum(per_image[a] * AA_TYPICAL_SURVIVORS[a] for a in per_image) * CIFAR_TEST
    return {"model": f"robust probe with {arch}'s cost", "images": n, "batch_size": batch, "fp32": True,
            "budget_scale": scale, "settings": settings, "seconds_measured": result["seconds"],
            "per_image_s": per_image, "minutes_10k_upper_bound": worst / 60, "minutes_10k_typical": typical / 60,
            "typical_survivors": AA_TYPICAL_SURVIVORS}


# ------------------------------------------------------------------ jobs per GPU

def _resolve_gpu(slots: int) -> str:
    """The device a training job with ``gpu_slots_per_device = slots`` gets (soften.devices)."""
    from soften import devices

    try:
        return devices.resolve_device("cuda", slots)  # the slot-aware signature (gpu_slots_per_device)
    except TypeError:                                  # a soften without GPU slots: one job per GPU
        return devices.resolve_device("cuda")


def worker(steps: int, slots: int, batch: int, go_file: str, device: str = "cuda", arch: str = "resnet18") -> None:
    """One job of the jobs-per-GPU measurement: warm up, wait for the start signal, time ``steps`` steps."""
    device = torch.device(_resolve_gpu(slots) if device == "cuda" else device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    step = make_step("pgd-at", arch, batch, device)
    for _ in range(3):
        step()
    _sync(device)
    print("ready", flush=True)
    while not Path(go_file).exists():
        time.sleep(0.01)
    t = timed(lambda: [step() for _ in range(steps)], device)
    print(json.dumps({"device": str(device), "seconds": t, "images": steps * batch}), flush=True)


def one_gpu_env(environ: dict[str, str], index: int) -> dict[str, str]:
    """``environ`` with CUDA_VISIBLE_DEVICES naming only this process's GPU ``index`` (its entry of the
    current CUDA_VISIBLE_DEVICES, where set): every worker then shares that one GPU, however many the host has."""
    visible = [e.strip() for e in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    return {**environ, "CUDA_VISIBLE_DEVICES": visible[index] if index < len(visible) else str(index)}


def bench_jobs_per_gpu(sizes, counts=(1, 2, 4), device: str = "cuda", arch: str = "resnet18") -> list[dict[str, Any]]:
    """Aggregate throughput of 1, 2, 4 concurrent training processes on one GPU (the bench's own;
    ``device='cpu'``: the same machinery, for tests)."""
    out = []
    base_env = dict(os.environ)
    if device == "cuda":
        base_env = one_gpu_env(base_env, torch.cuda.current_device())
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            go = Path(tmp) / "go"
            env = {**base_env, "SOFTEN_GPU_LOCK_DIR": tmp}
            cmd = [sys.executable, "-m", "soften.tools.bench", "--worker", str(sizes["job_steps"]), str(n), str(sizes["batch"]),
                   str(go), device, arch]
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
            try:
                for p in procs:
                    if p.stdout.readline().strip() != "ready":
                        raise RuntimeError(f"a jobs-per-GPU worker failed to start (exit code {p.poll()})")
                go.touch()
                reports = [json.loads(p.stdout.readline()) for p in procs]
                for p in procs:
                    p.wait(timeout=600)
            finally:
                for p in procs:  # a failed worker must not leave the others waiting for the start signal
                    if p.poll() is None:
                        p.kill()
        wall = max(r["seconds"] for r in reports)
        images = sum(r["images"] for r in reports)
        out.append({"jobs": n, "images_per_s": images / wall, "devices": sorted({r["device"] for r in reports}),
                    "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES")})
    base = out[0]["images_per_s"]
    for row in out:
        row["gain"] = row["images_per_s"] / base
    return out


# ------------------------------------------------------------------ a real short run

def bench_mini(configfile: str, overrides: dict[str, Any], device: torch.device, threads: int) -> dict[str, Any]:
    """Fetch, train and evaluate the first experiment's first run of ``configfile`` in a scratch folder."""
    from soften.pipeline import layout, stages
    from soften.pipeline.config import fetch_entry, load_config, resolve_eval, resolve_run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config([configfile], {**overrides, "results_dir": f"{tmp}/results", "resources_dir": f"{tmp}/resources"})
        name = next(iter(cfg["experiments"]))
        exp = cfg["experiments"][name]
        runs = layout.experiment_runs(cfg, name)
        run = next((r for r in runs if r.method != "standard"), runs[0])
        phases: dict[str, float] = {}
        placed = {"device": str(device), "threads": threads}
        t = time.time()
        stages.fetch(fetch_entry(cfg, run.dataset), layout.dataset_path(cfg, run.dataset))
        stages.noise(layout.dataset_path(cfg, run.dataset), run.noise, cfg["noise_seed"], layout.noise_path(cfg, run.dataset, run.noise))
        phases["fetch"] = time.time() - t
        spec = {**resolve_run(cfg, run.dataset, run.noise, run.arch, run.method, run.seed), **placed}
        t = time.time()
        history = stages.train(spec, layout.run_dir(cfg, run))
        phases["train"] = time.time() - t
        ckpt = layout.checkpoint_path(cfg, run, "best")
        results = {}
        for attack in exp.get("attacks") or ["natural"]:
            espec = {**resolve_eval(cfg, run.dataset, attack), **placed}
            t = time.time()
            res = stages.evaluate_attack(ckpt, layout.dataset_path(cfg, run.dataset), espec, f"{tmp}/{attack}.json")
            phases[f"evaluate {attack}"] = time.time() - t
            results[attack] = res["accuracy"]
        last = history[-1]
        return {"configfile": configfile, "overrides": overrides, "experiment": name,
                "run": f"{run.dataset}/{run.noise}/{run.arch}/{run.method}/seed{run.seed}",
                "epochs": spec["training"]["epochs"], "train_images": spec.get("data_subset"),
                "seconds_per_epoch": [h["seconds"] for h in history], "phases_s": phases,
                "val_clean_acc": last["val_clean_acc"], "val_robust_acc": last["val_robust_acc"],
                "accuracy": results}


# ------------------------------------------------------------------ the suite

def run_suite(*, device: str = "auto", quick: bool = False, threads: int | None = None,
              mini_config: str | None = "config/cifar10-mini.yaml", mini_overrides: dict[str, Any] | None = None,
              log: Callable[[str], None] = print,
              checkpoint: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """The whole suite; ``checkpoint(result)`` is called after every part (the CLI writes the
    files then, so an interrupted run keeps what it measured; ``complete`` says whether it ended)."""
    from soften.devices import resolve_device

    dev = torch.device(resolve_device(device))
    if dev.type == "cpu":
        torch.set_num_threads(threads or 1)  # one thread: shared cores make multi-threaded kernels spin
    mode = "quick" if quick else dev.type
    sizes = SIZES["cuda" if mode == "cuda" else mode]
    result: dict[str, Any] = {"machine": machine(dev), "mode": mode, "sizes": sizes, "threat": THREAT,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    result["complete"] = False
    log(f"bench on {result['machine']['device_name']} ({dev}), torch {torch.__version__}, mode {mode}")

    def done(part: str) -> None:
        log(f"  {part} done")
        if checkpoint is not None:
            checkpoint(result)

    arch = sizes["arch"]
    result["pgd_at"] = bench_pgd_at(dev, sizes, (arch,) if arch == "cnn" else (arch, "resnet18"))
    done("PGD-AT steps")
    result["monitoring"] = bench_monitoring(dev, sizes, arch)
    result["overheads"] = bench_overheads(dev, arch=arch, batch=sizes["batch"], rounds=sizes["rounds"],
                                          warmup=sizes["warmup"])
    done("method overheads")
    if sizes["cnn_rounds"]:
        result["overheads_digits_cnn"] = bench_overheads(dev, arch="cnn", batch=DIGITS["batch"], rounds=sizes["cnn_rounds"],
                                                         warmup=2, shape=DIGITS["shape"], threat=DIGITS["threat"])
        done("digits CNN overheads")
    result["options"] = bench_options(dev, arch=arch, batch=sizes["batch"], rounds=sizes["rounds"], warmup=sizes["warmup"])
    if sizes["cnn_rounds"]:
        result["options_digits_cnn"] = bench_options(dev, arch="cnn", batch=DIGITS["batch"], rounds=sizes["cnn_rounds"],
                                                     shape=DIGITS["shape"], threat=DIGITS["threat"])
    done("speed options")
    if sizes["wrn_batch"]:
        s = median_time(make_step("pgd-at", "wrn34-10", sizes["wrn_batch"], dev), dev, sizes["wrn_repeats"], 1)
        result["wrn"] = {"arch": "wrn34-10", "amp": "auto", **step_figures(s, sizes["wrn_batch"])}
        done("WRN-34-10")
    result["autoattack"] = bench_autoattack(dev, sizes)
    done("AutoAttack")
    if dev.type == "cuda" and sizes["job_steps"]:
        result["jobs_per_gpu"] = bench_jobs_per_gpu(sizes)
        done("jobs per GPU")
    if mini_config:
        overrides = dict(mini_overrides or {})
        if dev.type == "cpu" and not overrides:
            overrides = {"scale": "smoke"} if quick else CPU_MINI_OVERRIDES
        result["mini"] = bench_mini(mini_config, overrides, dev, torch.get_num_threads())
        done("mini run")
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["complete"] = True
    return result


#: The real run on CPU: one epoch of config/cifar10-mini.yaml (the file says 30; a GPU runs them all),
#: evaluated on the first 500 test images (AutoAttack: 100).
CPU_MINI_OVERRIDES: dict[str, Any] = {
    "datasets": {"cifar10-mini": {"training": {"epochs": 1, "lr_milestones": []}}},
    "evaluation": {"n_examples": 500, "attacks": {"aa": {"n_examples": 100}}},  # of 2,000 and 500
}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# soften bench: {m['device_name']}", "",
             f"device `{m['device']}`, torch {m['torch']}, CUDA {m['cuda'] or '-'}, cuDNN {m['cudnn'] or '-'}, "
             f"{m['cpu_threads']} CPU threads, mode `{result['mode']}`, {result['started']}", "",
             "| figure | value |", "|---|---|"]
    for r in result["pgd_at"]:
        lines.append(f"| PGD-AT step {r['arch']} batch {r['batch']} amp {r['amp']} | {r['step_s'] * 1e3:.1f} ms "
                     f"= {r['s_per_epoch']:.1f} s per 50k-image epoch (training only) |")
    mon = result.get("monitoring")
    if mon:
        lines.append(f"| per-epoch monitoring ({mon['monitored_images']} images, PGD-10, fp32) | {mon['s_per_epoch']:.1f} s |")
    for key in ("overheads", "overheads_digits_cnn"):
        ov = result.get(key)
        for method, r in (ov["methods"].items() if ov else ()):
            if method != "pgd-at":
                shape = "x".join(map(str, ov["input"]))
                lines.append(f"| {method} / PGD-AT step ({ov['arch']} {shape}, batch {ov['batch']}, {ov['rounds']} rounds) | "
                             f"{r['ratio']:.3f} ({(r['ratio'] - 1) * 100:+.1f}%) |")
    for key in ("options", "options_digits_cnn"):
        op = result.get(key)
        for name, r in list(op["variants"].items())[1:] if op else ():
            lines.append(f"| PGD-AT step with {name} / {next(iter(op['variants']))} ({op['arch']}, batch {op['batch']}) | "
                         + (f"failed: {r['error']} |" if "error" in r else f"{r['ratio']:.3f} |"))
    if "wrn" in result:
        w = result["wrn"]
        lines.append(f"| PGD-AT step WRN-34-10 batch {w['batch']} | {w['step_s'] * 1e3:.1f} ms = {w['s_per_epoch']:.1f} s per epoch |")
    aa = result.get("autoattack")
    if aa:
        lines.append(f"| AutoAttack standard, 10k images, fp32, batch {aa['batch_size']} | {aa['minutes_10k_upper_bound']:.1f} min "
                     f"upper bound (all robust), {aa['minutes_10k_typical']:.1f} min typical robust ResNet-18 |")
    for r in result.get("jobs_per_gpu", []):
        lines.append(f"| ResNet-18 PGD-AT, {r['jobs']} job(s) per GPU | {r['images_per_s']:.0f} img/s ({r['gain']:.2f}x) |")
    if "mini" in result:
        mini = result["mini"]
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in mini["phases_s"].items())
        lines.append(f"| {mini['configfile']} {mini['run']}, {mini['epochs']} epoch(s) | {phases} |")
    lines.append("")
    if result["mode"] != "cuda":
        lines.append("CPU figures are per-image extrapolations from small batches, measured while other processes "
                     "may share the cores; the ratios (overheads) are the robust part.")
    if result["mode"] == "quick":
        lines.append("Quick mode: tiny sizes for tests; these figures estimate nothing.")
    if not result.get("complete", True):
        lines.append("Incomplete: the run was interrupted (or is still running); the parts above are all it measured.")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = result["machine"]["device_slug"] + ("-quick" if result["mode"] == "quick" else "")
    from soften.io import save_text

    js, md = out / f"{name}.json", out / f"{name}.md"
    save_text(json.dumps(result, indent=2) + "\n", js)
    save_text(markdown(result), md)
    return js, md


if __name__ == "__main__" and len(sys.argv) == 8 and sys.argv[1] == "--worker":
    worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7])
