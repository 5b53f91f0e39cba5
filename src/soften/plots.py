"""The figures stage: one PNG per experiment, drawn by the experiment's kind.

- accuracy, transfer, noise-gap: learning curves (SGLR Fig. 1b, Fig. 4): one
  panel per (dataset, noise, arch); per method the test accuracy (mean over
  seeds, a band for the seed range), the training accuracy dashed, the best
  epoch marked. Robust (PGD) accuracy when the experiment trains adversarially,
  clean accuracy otherwise (standard training under label noise).
- calibration: reliability diagrams (SGLR Tab. B.1): rows = methods, columns =
  input type x checkpoint, the gap to the diagonal hatched; ECE in the titles.
- sanity: accuracy against the PGD radius and against the number of steps
  (ADR Fig. 6a/6b), one line per checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from soften.io import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def method_colors(methods: list[str]) -> dict[str, str]:
    """One colour per method, in the experiment's order (the same method keeps its colour across panels)."""
    return {m: f"C{i % 10}" for i, m in enumerate(methods)}


def experiment_figure(inputs: Iterable[str | Path], spec: dict[str, Any], out: str | Path) -> Path:
    inputs = [Path(p) for p in inputs]
    kind = spec["kind"]
    if kind == "calibration":
        return plot_reliability([json.loads(p.read_text()) for p in inputs], spec, Path(out))
    if kind == "sanity":
        return plot_sanity([json.loads(p.read_text()) for p in inputs], spec, Path(out))
    return plot_curves(histories(inputs, spec["runs"]), spec, Path(out))


def histories(paths: list[Path], runs: list[dict[str, Any]]) -> pd.DataFrame:
    """history.csv files with their runs' fields (given in the same order; never parsed from paths)."""
    if len(paths) != len(runs):
        raise ValueError(f"{len(paths)} history files for {len(runs)} runs")
    frames = []
    for path, run in zip(paths, runs):
        df = pd.read_csv(path)
        for key in ("dataset", "noise", "arch", "method", "seed"):
            df[key] = run[key]
        df["adversarial"] = run["spec"]["base_method"].split("+")[0] != "standard"
        frames.append(df)
    if not frames:
        raise ValueError("no history.csv files given")
    return pd.concat(frames, ignore_index=True)


def plot_curves(df: pd.DataFrame, spec: dict[str, Any], out: Path) -> Path:
    metric = "robust" if df["adversarial"].any() else "clean"
    methods = [m for m in spec.get("methods", []) if m in set(df["method"])] or sorted(df["method"].unique())
    colors = method_colors(spec.get("methods") or methods)
    panels = list(dict.fromkeys(zip(df["dataset"], df["noise"], df["arch"])))
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False, constrained_layout=True)
    for ax, (dataset, noise, arch) in zip(axes.flat, panels):
        panel = df[(df["dataset"] == dataset) & (df["noise"] == noise) & (df["arch"] == arch)]
        for method in methods:
            runs = panel[panel["method"] == method]
            if runs.empty or (metric == "robust" and not runs["adversarial"].any()):
                continue
            by_epoch = runs.groupby("epoch")
            test = 100 * by_epoch[f"test_{metric}_acc"].mean()
            lo, hi = 100 * by_epoch[f"test_{metric}_acc"].min(), 100 * by_epoch[f"test_{metric}_acc"].max()
            train = 100 * by_epoch[f"train_{metric}_acc"].mean()
            color = colors.get(method, "k")
            ax.plot(test.index, test.values, color=color, lw=1.6, label=method)
            if runs["seed"].nunique() > 1:
                ax.fill_between(test.index, lo.values, hi.values, color=color, alpha=0.15, lw=0)
            ax.plot(train.index, train.values, color=color, lw=1.0, ls="--")
            best = int(test.idxmax())
            ax.plot([best], [test.loc[best]], marker="o", color=color, ms=5)
        ax.set(title=f"{dataset} · noise {noise} · {arch}", xlabel="epoch", ylabel=f"{metric} accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="k", lw=1.6), plt.Line2D([], [], color="k", lw=1.0, ls="--"),
                plt.Line2D([], [], color="k", marker="o", ls="")]
    labels += ["test (mean; band: seed range)", "train (monitored subset)", "highest mean test accuracy"]
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle(spec.get("title") or spec["name"], fontsize=10)
    return _save(fig, out)


def plot_reliability(records: list[dict], spec: dict[str, Any], out: Path) -> Path:
    """Reliability diagrams of the first seed, first (dataset, noise, arch): accuracy vs confidence per bin."""
    first = records[0]
    recs = [r for r in records if (r["dataset"], r["noise"], r["arch"], r["seed"]) ==
            (first["dataset"], first["noise"], first["arch"], first["seed"])]
    methods = [m for m in spec.get("methods", []) if any(r["method"] == m for r in recs)]
    ckpts = [c for c in ("best", "final") if any(r["checkpoint"] == c for r in recs)]
    inputs = list(first["inputs"])
    cols = [(name, c) for name in inputs for c in ckpts]
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(2.9 * len(cols), 2.8 * len(methods)),
                             squeeze=False, constrained_layout=True)
    for i, method in enumerate(methods):
        for j, (name, ckpt) in enumerate(cols):
            ax = axes[i][j]
            r = next((r for r in recs if r["method"] == method and r["checkpoint"] == ckpt), None)
            if r is None:
                ax.axis("off")
                continue
            res = r["inputs"][name]
            bins = [b for b in res["bins"] if b["count"]]
            mids = [(b["lower"] + b["upper"]) / 2 for b in bins]
            width = res["bins"][0]["upper"] - res["bins"][0]["lower"]
            ax.bar(mids, [b["accuracy"] for b in bins], width=width, edgecolor="k", alpha=0.7, label="accuracy per bin")
            ax.bar(mids, [abs(b["confidence"] - b["accuracy"]) for b in bins],
                   bottom=[min(b["confidence"], b["accuracy"]) for b in bins],
                   width=width, color="none", edgecolor="red", hatch="//", lw=0.8, label="gap to confidence")
            ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
            ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{method} · {name} · {ckpt}\nECE {res['ece']:.3f}")
            ax.title.set_fontsize(8)
            if i == len(methods) - 1:
                ax.set_xlabel("confidence")
            if j == 0:
                ax.set_ylabel("accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"{spec.get('title') or spec['name']}\n{first['dataset']} · noise {first['noise']} · "
                 f"{first['arch']} · seed {first['seed']}", fontsize=9)
    return _save(fig, out)


def plot_sanity(records: list[dict], spec: dict[str, Any], out: Path) -> Path:
    fig, (ax_eps, ax_steps) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    colors = method_colors(spec.get("methods", []))
    for r in records:
        label = f"{r['method']} · seed {r['seed']} · {r['checkpoint']}"
        color = colors.get(r["method"], "k")
        eps = [0.0] + [p["eps"] * 255 for p in r["eps_sweep"]]
        acc = [100 * r["clean_accuracy"]] + [100 * p["accuracy"] for p in r["eps_sweep"]]
        ax_eps.plot(eps, acc, marker="o", ms=3, color=color, label=label)
        ax_steps.plot([p["steps"] for p in r["steps_sweep"]], [100 * p["accuracy"] for p in r["steps_sweep"]],
                      marker="o", ms=3, color=color, label=label)
    ax_eps.set(xscale="symlog", xlabel="PGD radius eps (×1/255; 255 = unbounded)", ylabel="accuracy (%)",
               title="accuracy must reach 0 when unbounded")
    ax_steps.set(xscale="log", xlabel="PGD steps", ylabel="accuracy (%)", title="accuracy must converge with steps")
    for ax in (ax_eps, ax_steps):
        ax.grid(alpha=0.3)
    ax_steps.legend(fontsize=7)
    fig.suptitle(spec.get("title") or spec["name"], fontsize=10)
    return _save(fig, out)
