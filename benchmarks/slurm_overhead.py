"""How long Snakemake takes to notice that a SLURM job ended (docs/performance.md, SLURM).

    python benchmarks/slurm_overhead.py .snakemake/log/<time>.snakemake.log

Reads the plugin's "Job N has been submitted with SLURM jobid M" lines and Snakemake's
"[time] Finished jobid: N" lines from the log, asks sacct for each SLURM job's start
and end, and prints per job: queue wait (submit -> start), run time (start -> end) and
detection delay (end -> Snakemake's "Finished"), as medians and maxima. The delay is
what the status-check settings (slurm-init-seconds-before-status-checks) govern; the
run time is what the machine's load governs.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from datetime import datetime


def parse_log(text: str) -> tuple[dict[str, str], dict[str, datetime]]:
    """(snakemake jobid -> SLURM jobid, snakemake jobid -> time Snakemake reported it finished)."""
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", text))
    finished = {}
    for stamp, jobid in re.findall(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]\nFinished jobid: (\d+)", text):
        finished[jobid] = datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y")
    return submitted, finished


def sacct_times(jobids: list[str]) -> dict[str, tuple[datetime, datetime, datetime]]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(jobids), "-o", "JobID,Submit,Start,End"],
                         capture_output=True, text=True, check=True).stdout
    times = {}
    for line in out.splitlines():
        jid, *stamps = line.split("|")
        if "Unknown" not in stamps:  # still pending or running
            times[jid] = tuple(datetime.fromisoformat(s) for s in stamps)
    return times


def main(path: str) -> None:
    submitted, finished = parse_log(open(path).read())
    times = sacct_times(list(submitted.values()))
    wait, run, delay = [], [], []
    for sm_id, slurm_id in submitted.items():
        if slurm_id not in times or sm_id not in finished:
            continue  # a retried job: its last submission carries the Finished line
        submit, start, end = times[slurm_id]
        wait.append((start - submit).total_seconds())
        run.append((end - start).total_seconds())
        delay.append((finished[sm_id] - end).total_seconds())
    for name, xs in (("queue wait", wait), ("run time", run), ("detection delay", delay)):
        print(f"{name:16s} median {statistics.median(xs):6.1f} s  max {max(xs):6.1f} s  (n={len(xs)})")


if __name__ == "__main__":
    main(sys.argv[1])
