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


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


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
        written.append(_save(fig, out_dir / f"curves-{dataset}-{noise}-{arch}.png"))
    return written


def collect_calibration(paths: Iterable[str | Path]) -> list[dict]:
    import json

    records = []
    for p in map(Path, paths):
        for f in sorted(p.rglob("calibration/*.json")) if p.is_dir() else [p]:
            records.append(json.loads(f.read_text()))
    return records


def plot_reliability(records: list[dict], out_dir: str | Path) -> list[Path]:
    """Reliability diagrams (accuracy vs confidence per bin), one PNG per
    (dataset, noise, arch, seed, checkpoint): rows = methods, columns = input
    types (clean, PGD, Square), the gap to the diagonal shaded; ECE in titles."""
    out_dir = Path(out_dir)
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["noise"], r["arch"], r["seed"], r["checkpoint"]), []).append(r)
    written = []
    for (dataset, noise, arch, seed, ckpt), recs in groups.items():
        recs = sorted(recs, key=lambda r: r["method"])
        inputs = list(recs[0]["inputs"])
        fig, axes = plt.subplots(len(recs), len(inputs), figsize=(3.2 * len(inputs), 3.0 * len(recs)),
                                 squeeze=False, constrained_layout=True)
        for i, r in enumerate(recs):
            for j, name in enumerate(inputs):
                ax, res = axes[i][j], r["inputs"][name]
                bins = [b for b in res["bins"] if b["count"]]
                mids = [(b["lower"] + b["upper"]) / 2 for b in bins]
                width = res["bins"][0]["upper"] - res["bins"][0]["lower"]
                ax.bar(mids, [b["accuracy"] for b in bins], width=width, edgecolor="k", alpha=0.7, label="accuracy")
                # The gap between accuracy and confidence, drawn over or under the bar (hatched).
                ax.bar(mids, [abs(b["confidence"] - b["accuracy"]) for b in bins],
                       bottom=[min(b["confidence"], b["accuracy"]) for b in bins],
                       width=width, color="none", edgecolor="red", hatch="//", lw=0.8, label="gap")
                ax.plot([0, 1], [0, 1], "k--", lw=1)
                ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{r['method']} · {name}: ECE {res['ece']:.3f}")
                if i == len(recs) - 1:
                    ax.set_xlabel("confidence")
                if j == 0:
                    ax.set_ylabel("accuracy")
        fig.suptitle(f"reliability · {dataset} · noise {noise} · {arch} · seed {seed} · {ckpt}")
        written.append(_save(fig, out_dir / f"reliability-{dataset}-{noise}-{arch}-seed{seed}-{ckpt}.png"))
    return written
