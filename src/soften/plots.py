"""Learning-curve figures: the robust-overfitting picture per (dataset, noise, arch).

One PNG per setting with three panels (mean over seeds, one line per method):
train vs test robust accuracy, validation robust accuracy, and the gradient
norm of the training loss (SGLR Fig. 1 plots the latter against the epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from soften.io import atomic_path  # noqa: E402

KEYS = ["dataset", "noise", "arch", "method", "seed"]


def collect_histories(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = []
    for p in map(Path, paths):
        for f in sorted(p.rglob("history.csv")) if p.is_dir() else [p]:
            parts = f.parent.parts  # .../{dataset}/{noise}/{arch}/{method}/seed{k}
            df = pd.read_csv(f)
            df["dataset"], df["noise"], df["arch"], df["method"] = parts[-5], parts[-4], parts[-3], parts[-2]
            df["seed"] = int(parts[-1].removeprefix("seed"))
            frames.append(df)
    if not frames:
        raise ValueError("no history.csv files found")
    return pd.concat(frames, ignore_index=True)


def plot_curves(histories: pd.DataFrame, out_dir: str | Path, method_order: list[str] | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    for (dataset, noise, arch), group in histories.groupby(["dataset", "noise", "arch"], sort=False):
        methods = [m for m in (method_order or []) if m in set(group["method"])] or sorted(group["method"].unique())
        fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
        for i, method in enumerate(methods):
            mean = group[group["method"] == method].groupby("epoch").mean(numeric_only=True)
            color = f"C{i % 10}"
            axes[0].plot(mean.index, 100 * mean["test_robust_acc"], color=color, label=f"{method} test")
            axes[0].plot(mean.index, 100 * mean["train_robust_acc"], color=color, ls="--", label=f"{method} train")
            axes[1].plot(mean.index, 100 * mean["val_robust_acc"], color=color, label=method)
            axes[2].plot(mean.index, mean["grad_norm"], color=color, label=method)
        axes[0].set(title="robust accuracy: train (dashed) vs test", xlabel="epoch", ylabel="%")
        axes[1].set(title="validation robust accuracy (selects best.pt)", xlabel="epoch", ylabel="%")
        axes[2].set(title="gradient norm of the training loss", xlabel="epoch")
        axes[0].legend(fontsize=7, ncol=2)
        axes[1].legend(fontsize=7)
        fig.suptitle(f"{dataset} · noise {noise} · {arch} (mean over seeds)")
        path = out_dir / f"curves-{dataset}-{noise}-{arch}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(path)
    return written
