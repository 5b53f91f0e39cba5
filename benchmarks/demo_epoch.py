"""Where a `make demo` training job spends its CPU time. Prints a table, writes JSON.

    python benchmarks/demo_epoch.py [--configfile config/config.yaml] [--experiment main] [--epochs 4]
                                    [--methods pgd-at pgd-at+sglr] [--noise symmetric-0.4] [--arch cnn]
                                    [--out results/benchmarks/demo_epoch.json]

Three parts, all in CPU-seconds of one thread (``time.process_time`` and the
children's ``getrusage``), so that a machine shared with other jobs inflates them
far less than wall-clock times:

1. process start-up, as every Snakemake job pays it: ``import torch``; the CLI
   (``import soften.__main__``); the first ``torch.optim.SGD`` (which imports
   ``torch._dynamo``); and the whole ``python -m soften --help``;
2. one training run of the config's demo dataset through the real
   ``soften.training.loop.train`` for ``--epochs`` epochs, the epoch split into
   training steps, per-epoch monitoring (validation, test and train subsets,
   separately) and checkpoint writing, by wrapping those functions of the loop;
3. the per-run totals this implies for the config's full schedule: training
   steps x epochs, monitoring x the epochs that monitor, start-up.

Run it before and after a change to the demo config or the loop; the numbers
in README/docs come from its output, never from timed assertions in tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child_cpu(cmd: list[str], repeats: int = 3) -> float:
    """Median CPU-seconds (user + system) of a child process."""
    times = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


def bench_startup() -> dict[str, float]:
    py = sys.executable
    sgd = "import torch; torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)"
    out = {
        "python": child_cpu([py, "-c", "pass"]),
        "import_torch": child_cpu([py, "-c", "import torch"]),
        "import_cli": child_cpu([py, "-c", "import soften.__main__"]),
        "import_torch_first_sgd": child_cpu([py, "-c", sgd]),
        "import_train_path": child_cpu([py, "-c", "import soften.__main__, soften.training.loop"]),
        "soften_help": child_cpu([py, "-m", "soften", "--help"]),
    }
    out["first_sgd"] = out["import_torch_first_sgd"] - out["import_torch"]
    return out


class Timers:
    """CPU-seconds spent inside wrapped functions, per label."""

    def __init__(self):
        self.total: dict[str, float] = {}

    def wrap(self, fn, label):
        def timed(*args, **kwargs):
            name = label(*args, **kwargs) if callable(label) else label
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] = self.total.get(name, 0.0) + time.process_time() - t

        return timed


def bench_training(cfg: dict, dataset: str, noise: str, arch: str, method: str, epochs: int, workdir: Path) -> dict:
    import soften.pipeline.config as sc
    import soften.training.loop as loop
    from soften.pipeline import stages

    entry = cfg["datasets"][dataset]
    data_npz = workdir / f"{dataset}.npz"
    if not data_npz.exists():
        stages.fetch(entry, data_npz)
    noise_npz = workdir / f"{dataset}-{noise}.npz"
    if not noise_npz.exists():
        stages.noise(data_npz, noise, cfg["noise_seed"], noise_npz)
    spec = sc.resolve_run(cfg, dataset, noise, arch, method, 0)
    schedule = dict(spec["training"])
    spec.update(dataset_npz=str(data_npz), noise_npz=str(noise_npz), device="cpu", threads=1)
    # A short run with the same per-epoch work: the schedule's epochs and milestones only
    # change the learning rate, and monitoring happens in the benchmarked epochs.
    spec["training"] = {**schedule, "epochs": epochs, "lr_milestones": [epochs + 1], "monitor_every": 1}

    timers = Timers()
    saved = {name: getattr(loop, name) for name in ("train_step", "evaluate_split", "save_torch", "save_text")}
    calls = []

    def which_split(model, data, **kw):
        # The loop monitors validation, test and train subsets, in that order, every epoch here.
        calls.append(None)
        return "monitor " + ("val", "test", "train")[(len(calls) - 1) % 3]

    first_step = []

    def train_step(*args, **kwargs):
        if not first_step:  # the run's set-up: data, model, optimizer, refiner
            first_step.append(time.process_time())
        return timed_step(*args, **kwargs)

    timed_step = timers.wrap(saved["train_step"], "train steps")
    try:
        loop.train_step = train_step
        loop.evaluate_split = timers.wrap(saved["evaluate_split"], which_split)
        loop.save_torch = timers.wrap(saved["save_torch"], "checkpoints")
        loop.save_text = timers.wrap(saved["save_text"], "checkpoints")
        t = time.process_time()
        loop.train(spec, workdir / f"run-{method}", progress=False)
        total = time.process_time() - t
    finally:
        for name, fn in saved.items():
            setattr(loop, name, fn)
    setup = first_step[0] - t
    parts = {k: v / epochs for k, v in timers.total.items()}
    parts["other"] = (total - setup) / epochs - sum(parts.values())
    tr = schedule
    return {"method": method, "noise": noise, "arch": arch, "epochs_run": epochs, "per_epoch_cpu_s": parts,
            "setup_cpu_s": setup,
            "schedule": {k: tr.get(k) for k in ("epochs", "lr_milestones", "test_subset", "val_attack_steps",
                                                 "monitor_every", "batch_size")}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--experiment", default="main", help="the runs to time: this experiment's first dataset and "
                   "architecture, last noise setting, and methods (each overridable below)")
    p.add_argument("--dataset")
    p.add_argument("--noise")
    p.add_argument("--arch")
    p.add_argument("--methods", nargs="+")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--out", default="results/benchmarks/demo_epoch.json")
    args = p.parse_args()

    import torch

    import soften.pipeline.config as sc

    torch.set_num_threads(1)
    # The first SGD of a process imports torch._dynamo (~1 CPU-s): pay it here, once, so that every
    # run below measures a warm set-up; process start-up (cold) is measured separately above.
    torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    cfg = sc.load_config([args.configfile])
    exp = cfg["experiments"][args.experiment]
    dataset, noise, arch = args.dataset or exp["datasets"][0], args.noise or exp["noise"][-1], args.arch or exp["archs"][0]
    methods = args.methods or [m for m in exp["methods"] if m != "standard"]
    result = {"config": args.configfile, "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.machine(), "load_average": list(__import__("os").getloadavg())}
    if not args.skip_startup:
        result["startup_cpu_s"] = bench_startup()
    with tempfile.TemporaryDirectory() as tmp:
        result["training"] = [bench_training(cfg, dataset, noise, arch, m, args.epochs, Path(tmp)) for m in methods]

    if "startup_cpu_s" in result:
        s = result["startup_cpu_s"]
        print("start-up, CPU-s per process: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()))
    for r in result["training"]:
        parts = r["per_epoch_cpu_s"]
        total = sum(parts.values())
        sched = r["schedule"]
        every = sched.get("monitor_every") or 1
        print(f"{r['method']} ({r['arch']}) on {dataset}/{r['noise']}: {total:.2f} CPU-s per fully monitored epoch, "
              f"{r['setup_cpu_s']:.2f} s set-up in train() (data, model, refiner)")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {k:<22} {v:6.3f} s  {100 * v / total:5.1f}%")
        monitor = sum(v for k, v in parts.items() if k.startswith("monitor") and k != "monitor val")
        epochs = sched["epochs"]
        monitored = len({e for e in range(1, epochs + 1) if e % every == 0 or e == epochs})
        run = (total - monitor) * epochs + monitor * monitored + r["setup_cpu_s"]
        if "startup_cpu_s" in result:  # a train job's process: imports, then its first SGD
            run += result["startup_cpu_s"]["import_train_path"] + result["startup_cpu_s"]["first_sgd"]
        r["run_cpu_s"] = run
        print(f"  whole train job at the config's schedule ({epochs} epochs, test/train monitored on "
              f"{monitored}, process start-up included): ~{run:.0f} CPU-s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
