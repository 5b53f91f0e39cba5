"""How Snakemake's planning time grows with the grid. Prints a table, writes JSON.

    python benchmarks/planning.py [--configfile config/sglr.yaml] [--experiment tab3]
                                  [--seeds 10 100 200 400] [--repeats 1]
                                  [--out benchmarks/results/planning.json]

For each seed count N, ``snakemake -n all`` (a dry run: the whole DAG is planned, nothing
runs) on the config with ``--config "experiments={EXPERIMENT: {seeds: [0, ..., N-1]}}"``,
in an empty working directory. Recorded per N: the number of jobs and of training runs
the dry run lists, wall-clock seconds, and the CPU seconds of the Snakemake process
(``getrusage`` of the child: a machine shared with other jobs inflates it far less than
the wall clock). Then the marginal planning cost per added seed between consecutive
counts: planning grows linearly when it stays flat (the issue's bar: 100 -> 400 within
1.5x of 10 -> 100, and 400 seeds of tab3, 3,200 runs, within 10 s).

Numbers for README/docs come from this output, never from timed assertions in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(configfile: Path, experiment: str, seeds: int) -> dict:
    override = f"experiments={{{experiment}: {{seeds: [{', '.join(map(str, range(seeds)))}]}}}}"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory(prefix="soften-planning-") as work:
        cmd = [sys.executable, "-m", "snakemake", "all", "-n", "-s", str(REPO / "workflow" / "Snakefile"),
               "--directory", work, "--cores", "1", "--configfile", str(configfile), "--config", override]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"planning.py: snakemake -n failed for {seeds} seeds:\n{proc.stderr[-3000:]}")
    log = proc.stdout + proc.stderr
    counts = dict((rule, int(n)) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", log, re.MULTILINE))
    return {"seeds": seeds, "jobs": counts.get("total"), "train_jobs": counts.get("train"), "wall_s": round(wall, 3),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", type=Path, default=REPO / "config" / "sglr.yaml")
    ap.add_argument("--experiment", default="tab3")
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 100, 200, 400])
    ap.add_argument("--repeats", type=int, default=1, help="dry runs per seed count; the fastest counts")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "planning.json")
    args = ap.parse_args(argv)

    rows = []
    for n in sorted(args.seeds):
        tries = [dry_run(args.configfile, args.experiment, n) for _ in range(args.repeats)]
        rows.append(min(tries, key=lambda r: r["cpu_s"]))
        print(f"{n:>5} seeds: {rows[-1]['jobs']} jobs, {rows[-1]['train_jobs']} runs, "
              f"{rows[-1]['wall_s']:.2f} s wall, {rows[-1]['cpu_s']:.2f} CPU-s", flush=True)
    marginal = []
    for a, b in zip(rows, rows[1:]):
        added = b["seeds"] - a["seeds"]
        marginal.append({"from": a["seeds"], "to": b["seeds"],
                         "wall_s_per_seed": round((b["wall_s"] - a["wall_s"]) / added, 5),
                         "cpu_s_per_seed": round((b["cpu_s"] - a["cpu_s"]) / added, 5)})
    by_seeds = {r["seeds"]: r for r in rows}
    ratio = None
    if {10, 100, 400} <= by_seeds.keys():
        low = (by_seeds[100]["cpu_s"] - by_seeds[10]["cpu_s"]) / 90
        high = (by_seeds[400]["cpu_s"] - by_seeds[100]["cpu_s"]) / 300
        ratio = round(high / low, 3) if low > 0 else None
    config = args.configfile.resolve()
    shown = config.relative_to(REPO) if config.is_relative_to(REPO) else config
    report = {
        "what": f"snakemake -n all on {shown}, experiments.{args.experiment}.seeds overridden",
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2), "python": platform.python_version()},
        "rows": rows, "marginal": marginal,
        "marginal_cpu_ratio_100_400_over_10_100": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"marginal CPU-s per seed, 100->400 over 10->100: {ratio}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
