"""Helpers for tests that compare the Snakemake and DVC pipelines: run Snakemake and
DVC as subprocesses and read what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PLACEMENT = re.compile(r" --threads \d+")
LOG = re.compile(r"^echo .*?; | 2>&1 \| tee -a \S+ >> \S+$")


@dataclass
class DryJob:
    rule: str
    input: list[str]
    output: list[str]
    shell: str
    reason: str


def snakemake(workdir: Path, snakefile: Path, config: Path, env: dict, *extra: str,
              target: str = "all") -> subprocess.CompletedProcess:
    """``snakemake TARGET`` in ``workdir`` (the target first: --configfile swallows the words after it)."""
    cmd = [sys.executable, "-m", "snakemake", target, "-s", str(snakefile), "--directory", str(workdir),
           "--cores", "2", *extra, "--configfile", str(config)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)


def dry_run_jobs(text: str) -> list[DryJob]:
    """The jobs of ``snakemake -n -p`` output (rule, input, output, shell command, reason)."""
    jobs: list[DryJob] = []
    current: dict | None = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line)
        if m:
            current = {"rule": m.group(1), "input": [], "output": [], "reason": "", "shell": ""}
            continue
        if current is None:
            continue
        m = re.match(r"^    (input|output|reason): (.*)$", line)
        if m:
            value = m.group(2)
            current[m.group(1)] = value if m.group(1) == "reason" else value.split(", ")
        elif line.startswith("Shell command: "):
            current["shell"] = line[len("Shell command: "):]
            jobs.append(DryJob(**current))
            current = None
    return jobs


def dvc_command(shell: str) -> str:
    """A Snakemake job's shell command without what only Snakemake adds (placement, log)."""
    return PLACEMENT.sub("", LOG.sub("", shell))


def dvc_status_stages(text: str) -> set[str]:
    """Stage names ``dvc status`` reports as changed."""
    return {line[:-1] for line in text.splitlines() if line and not line[0].isspace() and line.endswith(":")}
