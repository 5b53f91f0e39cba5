"""The figures stage: one PNG per experiment, drawn by the experiment's kind.

- accuracy, transfer, noise-gap: learning curves (SGLR Fig. 1b, Fig. 4), one
  column per (dataset, noise, arch): per method the test accuracy against epochs
  (mean over seeds, a band of ± one standard deviation), the training accuracy
  dashed, the best checkpoint (chosen on validation) starred, the learning-rate
  decays dotted and, under symmetric label noise, the share of correct training
  labels (training accuracy above it means wrong labels are being fit). Robust (PGD) accuracy when the experiment trains adversarially,
  clean accuracy otherwise (standard training under label noise).
  Accuracy experiments add a row of bars under the curves: Best and Final
  checkpoint accuracy under the experiment's first attack (the table's numbers,
  on its whole test set) per method, ± one standard deviation over seeds, with
  the drop Best − Final written above each pair: robust overfitting at a glance.
- calibration: reliability diagrams (SGLR Tab. B.1): rows = methods, columns =
  input type x checkpoint, the gap to the diagonal hatched; ECE in the titles.
- sanity: accuracy against the PGD radius and against the number of steps
  (ADR Fig. 6a/6b), one line per checkpoint.

A method has the same colour in every figure (:func:`method_color`).
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from soften.io import atomic_path  # noqa: E402
from soften.data.noise import parse_noise_name  # noqa: E402

#: Fixed colours for the methods the configs name, so that a method looks the same
#: in every figure of every experiment (colour-blind-safe Okabe-Ito and Tableau hues).
METHOD_COLORS = {
    "standard": "#7f7f7f",
    "pgd-at": "#d55e00",          # the baseline that overfits: vermilion
    "pgd-at+sglr": "#0072b2",     # SGLR: blue
    "pgd-at+adr": "#009e73",      # ADR: green
    "pgd-at+ls": "#e69f00",
    "pgd-at+te": "#8c564b",
    "pgd-at+sgls": "#56b4e9",
    "pgd-at+awp": "#bcbd22",
    "trades": "#cc79a7",
    "trades+sglr": "#6a3d9a",
    "trades+adr": "#17becf",
    "kd-at": "#b15928",
    "kd-swa": "#1b9e77",
}
CORRECT_STYLE = (0, (6, 3))
#: Methods (and variants) not listed above get one of these, by a hash of their name.
EXTRA_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39"]


def method_color(method: str) -> str:
    """One colour per method name, the same in every figure (not by position in a list)."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return EXTRA_COLORS[zlib.crc32(method.encode()) % len(EXTRA_COLORS)]


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    return {m: method_color(m) for m in methods}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def experiment_figure(inputs: Iterable[str | Path], spec: dict[str, Any], out: str | Path) -> Path:
    inputs = [Path(p) for p in inputs]
    kind = spec["kind"]
    if kind == "calibration":
        return plot_reliability([json.loads(p.read_text()) for p in inputs], spec, Path(out))
    if kind == "sanity":
        return plot_sanity([json.loads(p.read_text()) for p in inputs], spec, Path(out))
    if kind == "transfer":
        return plot_transfer([json.loads(p.read_text()) for p in inputs], spec, Path(out))
    # Learning curves from the runs' history.csv; accuracy experiments also pass the
    # evaluation records of their first attack (soften.pipeline.layout.figure_inputs).
    csvs = [p for p in inputs if p.suffix == ".csv"]
    records = [json.loads(p.read_text()) for p in inputs if p.suffix == ".json"]
    return plot_curves(histories(csvs, spec["runs"]), spec, Path(out), records)


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


def best_epochs(runs: pd.DataFrame, records: list[dict[str, Any]]) -> list[int]:
    """Each seed's best-checkpoint epoch: from its evaluation record where there is one,
    else the history's first epoch of highest validation score (the loop's rule:
    robust accuracy for adversarial methods, clean otherwise)."""
    recorded = {int(r["seed"]): int(r["checkpoint_epoch"]) for r in records
                if r["checkpoint"] == "best" and "checkpoint_epoch" in r}
    out = []
    for seed, run in runs.groupby("seed"):
        if int(seed) in recorded:
            out.append(recorded[int(seed)])
            continue
        score = run["val_robust_acc"] if run["adversarial"].any() and run["val_robust_acc"].notna().any() \
            else run["val_clean_acc"]
        out.append(int(run.loc[score.idxmax(), "epoch"]))
    return out


def _seed_stats(values: pd.Series) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one seed)."""
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def plot_curves(df: pd.DataFrame, spec: dict[str, Any], out: Path, records: list[dict[str, Any]] | None = None) -> Path:
    records = records or []
    metric = "robust" if df["adversarial"].any() else "clean"
    adversarial = {m for m, a in df.groupby("method")["adversarial"].any().items() if a}
    methods = [m for m in spec.get("methods", []) if m in set(df["method"])] or sorted(df["method"].unique())
    if metric == "robust":
        methods = [m for m in methods if m in adversarial]  # a standard model's PGD accuracy is ~0: no curve
    panels = list(dict.fromkeys(zip(df["dataset"], df["noise"], df["arch"])))
    bars = bool(records)
    rows = 2 if bars else 1
    cols = len(panels)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0 * cols, 8.0), 5.0 + 3.0 * bars), squeeze=False,
                             constrained_layout=True, gridspec_kw={"height_ratios": [1.35, 1] if bars else [1]})
    seeds = df.groupby(["dataset", "noise", "arch", "method"])["seed"].nunique()
    noisy_panels = False
    for j, (dataset, noise, arch) in enumerate(panels):
        ax = axes[0][j]
        panel = df[(df["dataset"] == dataset) & (df["noise"] == noise) & (df["arch"] == arch)]
        for method in methods:
            runs = panel[panel["method"] == method]
            if runs.empty:
                continue
            color = method_color(method)
            test_col, train_col = f"test_{metric}_acc", f"train_{metric}_acc"
            monitored = runs.dropna(subset=[test_col])
            by_epoch = monitored.groupby("epoch")
            test = 100 * by_epoch[test_col].mean()
            std = 100 * by_epoch[test_col].std(ddof=1).fillna(0.0)
            train = 100 * by_epoch[train_col].mean()
            ax.plot(test.index, test.values, color=color, lw=1.7)
            if runs["seed"].nunique() > 1:
                ax.fill_between(test.index, (test - std).values, (test + std).values, color=color, alpha=0.18, lw=0)
            ax.plot(train.index, train.values, color=color, lw=1.1, ls="--")
            own = [r for r in records if (r["dataset"], r["noise"], r["arch"], r["method"]) == (dataset, noise, arch, method)]
            best = sorted(best_epochs(runs, own))
            if best and len(test):
                at = best[len(best) // 2]  # the median seed's best epoch, on the mean curve
                y = float(pd.Series(test.values, index=test.index).reindex(
                    sorted(set(test.index) | {at})).interpolate(method="index").loc[at])
                ax.plot([at], [y], marker="*", ms=12, color=color, mec="k", mew=0.6, zorder=5)
        for decay in _lr_decays(panel):
            ax.axvline(decay, color="0.55", lw=0.8, ls=":", zorder=0)
        correct = correct_label_share(noise)
        if correct is not None:
            # Training accuracy (against the given labels) above this line means wrong labels are being fit.
            ax.axhline(100 * correct, color="0.3", lw=0.9, ls=CORRECT_STYLE, zorder=0)
            noisy_panels = True
        ax.set(title=f"{dataset} · noise {noise} · {arch}", xlabel="epoch", ylabel=f"{metric} accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if bars:
            _bars(axes[1][j], [r for r in records if (r["dataset"], r["noise"], r["arch"]) == (dataset, noise, arch)],
                  methods, seeds)
    handles = [Line2D([], [], color=method_color(m), lw=2.5) for m in methods]
    labels = [f"{m} ({_seed_label(seeds, m)})" for m in methods]
    handles += [Line2D([], [], color="k", lw=1.7), Patch(color="k", alpha=0.18, lw=0),
                Line2D([], [], color="k", lw=1.1, ls="--"),
                Line2D([], [], color="w", marker="*", ms=12, mfc="0.6", mec="k", mew=0.6),
                Line2D([], [], color="0.55", lw=0.8, ls=":")]
    labels += ["test, mean over seeds", "± 1 std over seeds", "train (monitored subset, training labels)",
               "best checkpoint (median epoch over seeds, chosen on validation)", "learning-rate decay"]
    if noisy_panels:
        handles.append(Line2D([], [], color="0.3", lw=0.9, ls=CORRECT_STYLE))
        labels.append("share of correct training labels: train above it = fitting wrong labels")
    if bars:
        handles += [Patch(facecolor="0.45", edgecolor="k"), Patch(facecolor="white", edgecolor="0.45", hatch="///")]
        labels += ["Best checkpoint (bars: ± 1 std over seeds)", "Final checkpoint"]
    fig.legend(handles, labels, loc="outside lower center", ncol=2 if cols < 3 else 3, fontsize=8, frameon=False)
    fig.suptitle(spec.get("title") or spec["name"], fontsize=10)
    return _save(fig, out)


def correct_label_share(noise: str) -> float | None:
    """The share of training labels left correct by a noise setting, where the name fixes it:
    symmetric noise moves exactly ``rate`` of the labels to another class (soften.data.noise)."""
    if noise == "none":
        return None
    kind, rate = parse_noise_name(noise)
    return 1.0 - rate if kind == "symmetric" else None


def _seed_label(seeds: pd.Series, method: str) -> str:
    counts = sorted({int(v) for k, v in seeds.items() if k[3] == method})
    n = "/".join(str(c) for c in counts)
    return f"{n} seed" + ("" if counts == [1] else "s")


def _lr_decays(panel: pd.DataFrame) -> list[int]:
    """Epochs after which the learning rate dropped (the history's lr column)."""
    lr = panel.groupby("epoch")["lr"].first().sort_index()
    return [int(e) - 1 for e, prev, cur in zip(lr.index[1:], lr.values[:-1], lr.values[1:]) if cur < prev]


def _bars(ax, records: list[dict[str, Any]], methods: list[str], seeds: pd.Series) -> None:
    """Best vs Final accuracy per method under the first attack, mean ± std over seeds."""
    if not records:
        ax.axis("off")
        return
    attack = records[0]["attack"]
    n = records[0]["n"]
    frame = pd.DataFrame([{"method": r["method"], "seed": r["seed"], "checkpoint": r["checkpoint"],
                           "acc": 100 * r["accuracy"]} for r in records if r["attack"] == attack])
    shown = [m for m in methods if m in set(frame["method"])]
    frame = frame[frame["method"].isin(shown)]
    width = 0.38
    tops = []
    for i, method in enumerate(shown):
        own = frame[frame["method"] == method]
        color = method_color(method)
        values = {}
        for k, ckpt in enumerate(("best", "final")):
            acc = own[own["checkpoint"] == ckpt].set_index("seed")["acc"]
            if acc.empty:
                continue
            mean, std = _seed_stats(acc)
            values[ckpt] = acc
            x = i + (k - 0.5) * width
            style = dict(color=color, edgecolor="k", lw=0.6) if ckpt == "best" else \
                dict(color="white", edgecolor=color, hatch="///", lw=1.0)
            ax.bar(x, mean, width=width * 0.95, yerr=std, capsize=3, error_kw={"lw": 0.9}, **style)
            tops.append(mean + std)
        if "best" in values and "final" in values:
            diff = (values["best"] - values["final"]).dropna()  # per seed, as the table's Diff
            mean, std = _seed_stats(diff)
            top = max(_seed_stats(values["best"])[0] + _seed_stats(values["best"])[1],
                      _seed_stats(values["final"])[0] + _seed_stats(values["final"])[1])
            ax.text(i, top + 0.4, f"Diff {mean:.1f}" + (f" ± {std:.1f}" if len(diff) > 1 else ""), ha="center",
                    va="bottom", fontsize=8, color=color, fontweight="bold")
    ax.set_xticks(range(len(shown)), shown, fontsize=8)
    low = min((v for v in frame["acc"] if not math.isnan(v)), default=0.0)
    high = max(tops, default=100.0)
    # The axis starts near the lowest bar: the story is the few points between Best and Final.
    ax.set_ylim(max(0.0, 5 * math.floor((low - 5) / 5)), high + 4)
    ax.set_ylabel(f"{attack} accuracy (%), {n} test images", fontsize=9)
    ax.set_title(f"Best vs Final checkpoint (Diff = Best − Final, as in the table)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot_transfer(records: list[dict[str, Any]], spec: dict[str, Any], out: Path) -> Path:
    """Black-box transfer: per (dataset, noise, arch) a panel, per crafted set (source ·
    attack) a group of bars, per method Best (solid) and Final (hatched) accuracy, mean ±
    std over seeds; a black tick marks the source model's own accuracy on the set."""
    frame = pd.DataFrame([{"panel": (r["dataset"], r["noise"], r["arch"]), "set": f"{r['source_name']} · {r['attack']}",
                           "method": r["method"], "seed": r["seed"], "checkpoint": r["checkpoint"],
                           "acc": 100 * r["accuracy"], "source": 100 * r["source_accuracy"], "n": r["n"]}
                          for r in records])
    panels = list(dict.fromkeys(frame["panel"]))
    named = [f"{src} · {att}" for src in spec.get("sources", []) for att in spec.get("attacks", [])]
    sets = [n for n in named if n in set(frame["set"])] or list(dict.fromkeys(frame["set"]))
    methods = [m for m in spec.get("methods", []) if m in set(frame["method"])] or sorted(frame["method"].unique())
    ckpts = [c for c in ("best", "final") if c in set(frame["checkpoint"])]
    slots = len(methods) * len(ckpts)
    width = 0.8 / slots
    fig, axes = plt.subplots(1, len(panels), figsize=(max(8.0, 1.1 + 0.45 * slots * len(sets)) * len(panels), 4.8),
                             squeeze=False, constrained_layout=True)
    for ax, panel in zip(axes[0], panels):
        own = frame[frame["panel"] == panel]
        for g, name in enumerate(sets):
            group = own[own["set"] == name]
            for i, method in enumerate(methods):
                color = method_color(method)
                for k, ckpt in enumerate(ckpts):
                    acc = group[(group["method"] == method) & (group["checkpoint"] == ckpt)].set_index("seed")["acc"]
                    if acc.empty:
                        continue
                    mean, std = _seed_stats(acc)
                    x = g + (i * len(ckpts) + k + 0.5) * width - 0.4
                    style = dict(color=color, edgecolor="k", lw=0.6) if ckpt == "best" else \
                        dict(color="white", edgecolor=color, hatch="///", lw=1.0)
                    ax.bar(x, mean, width=width * 0.92, yerr=std if len(acc) > 1 else None, capsize=2,
                           error_kw={"lw": 0.8}, **style)
            if not group.empty:
                ax.hlines(group["source"].iloc[0], g - 0.42, g + 0.42, colors="k", lw=1.2, ls=":")
        ax.set_xticks(range(len(sets)), sets, fontsize=8)
        low = min(own["acc"].min(), own["source"].min())
        ax.set_ylim(max(0.0, 5 * math.floor((low - 5) / 5)), min(100.0, own["acc"].max() + 5))
        ax.set_ylabel(f"accuracy (%) on the crafted set, {int(own['n'].iloc[0])} test images", fontsize=9)
        ax.set_title(" · ".join(panel), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    seeds = frame.groupby("method")["seed"].nunique()
    handles = [Patch(facecolor=method_color(m), edgecolor="k", lw=0.6) for m in methods]
    labels = [f"{m} ({seeds[m]} seed{'s' if seeds[m] > 1 else ''})" for m in methods]
    if "final" in ckpts:
        handles += [Patch(facecolor="grey", edgecolor="k", lw=0.6), Patch(facecolor="white", edgecolor="grey", hatch="///")]
        labels += ["Best checkpoint (solid)", "Final checkpoint (hatched)"]
    handles.append(Line2D([], [], color="k", ls=":", lw=1.2))
    labels.append("source model's own accuracy on the set (white-box)")
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
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
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(2.9 * len(cols), 2.8 * len(methods) + 0.6),
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
            ax.bar(mids, [b["accuracy"] for b in bins], width=width, color=method_color(method), edgecolor="k",
                   lw=0.5, alpha=0.75)
            ax.bar(mids, [abs(b["confidence"] - b["accuracy"]) for b in bins],
                   bottom=[min(b["confidence"], b["accuracy"]) for b in bins],
                   width=width, color="none", edgecolor="red", hatch="//", lw=0.8)
            ax.plot([0, 1], [0, 1], "k--", lw=1)
            ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{method} · {name} · {ckpt}\nECE {res['ece']:.3f}")
            ax.title.set_fontsize(8)
            if i == len(methods) - 1:
                ax.set_xlabel("confidence")
            if j == 0:
                ax.set_ylabel("accuracy")
    handles = [Patch(facecolor="0.6", edgecolor="k", alpha=0.75),
               Patch(facecolor="none", edgecolor="red", hatch="//"), Line2D([], [], color="k", ls="--", lw=1)]
    labels = ["bar: accuracy of the examples in a confidence bin (colour: method)",
              "hatched: gap between the bin's accuracy and mean confidence", "perfect calibration"]
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{spec.get('title') or spec['name']}\n{first['dataset']} · noise {first['noise']} · "
                 f"{first['arch']} · seed {first['seed']} · {first['n']} test images", fontsize=9)
    return _save(fig, out)


def plot_sanity(records: list[dict], spec: dict[str, Any], out: Path) -> Path:
    fig, (ax_eps, ax_steps) = plt.subplots(1, 2, figsize=(11, 4.0), constrained_layout=True)
    styles = {"best": "-", "final": "--"}
    for r in records:
        color = method_color(r["method"])
        ls = styles.get(r["checkpoint"], ":")
        eps = [0.0] + [p["eps"] * 255 for p in r["eps_sweep"]]
        acc = [100 * r["clean_accuracy"]] + [100 * p["accuracy"] for p in r["eps_sweep"]]
        ax_eps.plot(eps, acc, marker="o", ms=3, color=color, ls=ls)
        ax_steps.plot([p["steps"] for p in r["steps_sweep"]], [100 * p["accuracy"] for p in r["steps_sweep"]],
                      marker="o", ms=3, color=color, ls=ls)
    swept = sorted({0.0, *(p["eps"] * 255 for r in records for p in r["eps_sweep"])})
    # symlog, linear below the smallest radius swept, ticks at the radii themselves: 0 sits at the axis start
    # and no decade without a point gets a tick.
    ax_eps.set_xscale("symlog", linthresh=min([e for e in swept if e > 0], default=1.0))
    shown, kept = [], math.inf
    for e in reversed(swept):  # label 255 always, then every radius not crowding the last one labelled
        if e == 0 or kept / e >= 1.5:
            shown.append(e)
            kept = e
    ax_eps.set_xticks(shown, [f"{e:.3g}" for e in shown], fontsize=8)
    ax_eps.xaxis.set_minor_locator(plt.NullLocator())
    ax_eps.set(xlabel="PGD radius eps (×1/255; 255 = unbounded)", ylabel="accuracy (%)",
               title="accuracy must reach 0 when unbounded")
    ax_steps.set(xscale="log", xlabel="PGD steps", ylabel="accuracy (%)", title="accuracy must converge with steps")
    for ax in (ax_eps, ax_steps):
        ax.grid(alpha=0.3)
    order = list(spec.get("methods") or [])  # the experiment's order, not the files'
    methods = sorted(dict.fromkeys(r["method"] for r in records),
                     key=lambda m: order.index(m) if m in order else len(order))
    seeds = sorted({int(r["seed"]) for r in records})
    handles = [Line2D([], [], color=method_color(m), lw=2.5) for m in methods]
    labels = list(methods)
    for ckpt in dict.fromkeys(r["checkpoint"] for r in records):
        handles.append(Line2D([], [], color="k", ls=styles.get(ckpt, ":")))
        labels.append(f"{ckpt} checkpoint")
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    title = spec.get("title") or spec["name"]
    if "seed" not in title:  # a title that names its seeds already says it
        title += f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)
