"""Per-epoch training metrics to TensorBoard, when the config says ``tracking: tensorboard``.

Why TensorBoard rather than dvclive: ``history.csv`` already feeds ``dvc plots`` (dvc.yaml
declares it as the train stage's plot), so dvclive would duplicate it; what researchers
lack is the live dashboard they already use, across all runs at once:
``tensorboard --logdir results``. The event files go to ``<run>/tensorboard/``, one
scalar per history column (accuracy/val_robust, loss/train, lr, grad_norm, ...) with
the epoch as step. Off by default: it needs the ``tensorboard`` package
(``pip install 'soften[tracking]'``), whose import takes a few seconds per run.

Tracking says how a run reports, not what it computes: like device and threads it is
not part of the run's identity, so switching it on re-trains nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TRACKERS = ("none", "tensorboard")


def tracking_dir(run_directory: str | Path) -> Path:
    """Where a run's TensorBoard event files go: beside the trainer's other files of the run
    (``last.pt``, ``history.csv``), which the trainer names inside the folder it is given."""
    return Path(run_directory) / "tensorboard"


def tag(column: str) -> str:
    """history.csv column -> TensorBoard tag, grouped so that related curves share a panel."""
    if column.endswith("_acc"):
        return "accuracy/" + column.removesuffix("_acc")
    if column.endswith("_loss"):
        return "loss/" + column.removesuffix("_loss")
    return column


class NoTracker:
    def log_epoch(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    def __init__(self, logdir: Path, history: list[dict[str, Any]]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError("tracking: tensorboard needs the tensorboard package: "
                               "pip install 'soften[tracking]' (or set tracking: none)") from None
        # A resumed run re-logs its last finished epoch: a kill between saving last.pt and
        # logging would otherwise lose it. purge_step hides the events a killed run wrote
        # from that epoch on, so no epoch is shown twice.
        last = history[-1]["epoch"] if history else None
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=last)
        if history:
            self.log_epoch(history[-1])

    def log_epoch(self, row: dict[str, Any]) -> None:
        for column, value in row.items():
            if column != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag(column), value, global_step=int(row["epoch"]))
        self.writer.flush()  # visible while the run goes on, and nothing lost to a kill

    def close(self) -> None:
        self.writer.close()


def open_tracker(kind: str, run_dir: str | Path, history: list[dict[str, Any]]) -> NoTracker | TensorBoardTracker:
    """The tracker for ``kind`` (a ``tracking`` config value); ``history`` is what a resumed run already holds."""
    if kind == "tensorboard":
        return TensorBoardTracker(tracking_dir(run_dir), history)
    if kind != "none":
        raise ValueError(f"tracking: unknown tracker {kind!r} (known: {', '.join(TRACKERS)})")
    return NoTracker()
