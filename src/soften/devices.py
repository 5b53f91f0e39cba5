"""Which device a job runs on, resolved inside the job (never where the DAG is built).

``auto`` means CUDA when the job's host has it, else CPU. On a host with several
visible GPUs, a plain ``cuda`` job claims the first GPU no other soften job on
the host holds, through an advisory lock file held for the life of the process;
so ``snakemake all --resources gpu=N`` spreads N jobs over N GPUs. Where a
scheduler already restricts the job (SLURM sets CUDA_VISIBLE_DEVICES), only one
GPU is visible and it is used. ``cuda:K`` is taken as given.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("soften.devices")

#: Spec keys that say where a job runs (or how it reports), not what it computes: a
#: run moved to another device or thread count, or with tracking switched on, resumes
#: from its last.pt, and Snakemake passes them outside a rule's params so that moving
#: jobs re-runs nothing.
PLACEMENT_KEYS = ("device", "threads", "tracking")

_held: list[int] = []  # lock file descriptors kept open while the process lives


def _claim_gpu(count: int, lock_dir: Path) -> int | None:
    for index in range(count):
        fd = os.open(lock_dir / f"soften-gpu{index}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held.append(fd)
        return index
    return None


def resolve_device(name: str) -> str:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:K`` -> a concrete torch device string."""
    if name == "cpu" or name.startswith("cuda:"):
        return name
    import torch

    if name == "auto" and not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    if count <= 1:
        return "cuda"
    lock_dir = Path(os.environ.get("SOFTEN_GPU_LOCK_DIR", tempfile.gettempdir()))
    index = _claim_gpu(count, lock_dir)
    if index is None:
        index = os.getpid() % count
        log.warning("all %d GPUs are held by other soften jobs; sharing cuda:%d", count, index)
    return f"cuda:{index}"
