"""Figures: colours keyed by method, what marks and bars are drawn from, and that the
figures stage draws learning curves with gaps (monitor_every) and Best-vs-Final bars."""

import json

import numpy as np
import pandas as pd
import pytest

from soften.pipeline import layout
from soften.pipeline.config import load_config
from soften.reporting.plots import (METHOD_COLORS, _lr_decays, best_epochs, correct_label_share, experiment_figure, method_color,
                          method_colors)


def test_a_method_has_one_colour_in_every_figure():
    a = method_colors(["pgd-at", "pgd-at+sglr", "pgd-at+adr"])
    b = method_colors(["standard", "pgd-at+adr", "trades", "pgd-at"])   # another experiment, other order
    assert a["pgd-at"] == b["pgd-at"] == METHOD_COLORS["pgd-at"]
    assert a["pgd-at+adr"] == b["pgd-at+adr"]
    demo = ["standard", "pgd-at", "pgd-at+ls", "pgd-at+sglr", "trades", "trades+sglr", "pgd-at+adr"]
    assert len({method_color(m) for m in demo}) == len(demo)
    assert method_color("sglr-r0.4-T2") == method_color("sglr-r0.4-T2")   # a variant: stable, by name


def _history(val, lr, test=None):
    n = len(val)
    test = test if test is not None else [0.5] * n
    return pd.DataFrame({"epoch": range(1, n + 1), "seed": 0, "adversarial": True, "lr": lr,
                         "val_robust_acc": val, "val_clean_acc": [0.9] * n, "test_robust_acc": test})


def test_best_epoch_from_the_evaluation_record_else_the_first_validation_maximum():
    run = _history([0.1, 0.5, 0.5, 0.3], [0.1] * 4)
    assert best_epochs(run, []) == [2]   # strictly better only: the first of equal maxima (the loop's rule)
    record = {"seed": 0, "checkpoint": "best", "checkpoint_epoch": 3}
    assert best_epochs(run, [record]) == [3]


def test_learning_rate_decays_are_read_from_the_history():
    run = _history([0.1] * 6, [0.1, 0.1, 0.01, 0.01, 0.01, 0.001])
    assert _lr_decays(run) == [2, 5]


def test_the_share_of_correct_labels_drawn_under_symmetric_noise():
    # symmetric-0.4 moves exactly 40% of the labels to another class (soften.data.noise)
    assert correct_label_share("symmetric-0.4") == pytest.approx(0.6)
    assert correct_label_share("none") is None
    assert correct_label_share("uniform-0.4") is None   # some resampled labels stay correct: no exact share


def test_figure_inputs_add_the_bar_attack_evaluations_to_accuracy_experiments(repo):
    cfg = load_config(repo / "config" / "config.yaml")
    name = next(n for n, e in cfg["experiments"].items() if e["kind"] == "accuracy" and "pgd20" in e["attacks"])
    exp = cfg["experiments"][name]
    assert layout.figure_attack(cfg, name) == next(a for a in exp["attacks"] if a != "natural")
    inputs = layout.figure_inputs(cfg, name)
    runs = layout.experiment_runs(cfg, name)
    r = runs[0]
    run_dir = f"{cfg['results_dir']}/{r.dataset}/{r.noise}/{r.arch}/{r.method}/seed{r.seed}"
    attack = layout.figure_attack(cfg, name)
    assert inputs[0] == f"{run_dir}/history.csv"
    assert f"{run_dir}/eval/best-{attack}.json" in inputs and f"{run_dir}/eval/final-{attack}.json" in inputs
    assert len(inputs) == len(runs) * (1 + len(exp["checkpoints"]))
    for other, e in cfg["experiments"].items():
        if e["kind"] in ("calibration", "sanity", "transfer"):
            assert layout.figure_inputs(cfg, other) == layout.experiment_inputs(cfg, other)


@pytest.mark.parametrize("with_bars", [True, False])
def test_curves_with_monitoring_gaps_and_best_vs_final_bars(tmp_path, with_bars):
    rng = np.random.default_rng(0)
    paths, runs, records = [], [], []
    for noise in ("none", "symmetric-0.4"):
        for method in ("standard", "pgd-at", "pgd-at+sglr"):
            for seed in (0, 1):
                epochs = np.arange(1, 11)
                monitored = (epochs % 3 == 0) | (epochs == 10)
                acc = 0.5 + 0.03 * epochs + rng.normal(0, 0.01, 10)
                robust = method != "standard"
                df = pd.DataFrame({
                    "epoch": epochs, "lr": np.where(epochs <= 5, 0.1, 0.01), "train_loss": 1.0, "train_batch_acc": 0.5,
                    "train_clean_acc": np.where(monitored, acc, np.nan),
                    "train_robust_acc": np.where(monitored & robust, acc, np.nan),
                    "val_clean_acc": acc, "val_robust_acc": acc if robust else np.nan,
                    "test_clean_acc": np.where(monitored, acc, np.nan),
                    "test_robust_acc": np.where(monitored & robust, acc, np.nan), "grad_norm": 1.0, "seconds": 1.0})
                path = tmp_path / f"{noise}-{method}-{seed}.csv"
                df.to_csv(path, index=False)
                paths.append(path)
                runs.append({"dataset": "digits", "noise": noise, "arch": "cnn", "method": method, "seed": seed,
                             "spec": {"base_method": method}})
                for ckpt, epoch in (("best", 7), ("final", 10)):
                    rec = {"dataset": "digits", "noise": noise, "arch": "cnn", "method": method, "seed": seed,
                           "checkpoint": ckpt, "checkpoint_epoch": epoch, "attack": "pgd20", "n": 360,
                           "accuracy": float(acc[epoch - 1]) if robust else 0.0}
                    records.append(tmp_path / f"{noise}-{method}-{seed}-{ckpt}.json")
                    records[-1].write_text(json.dumps(rec))
    spec = {"name": "main", "kind": "accuracy", "methods": ["standard", "pgd-at", "pgd-at+sglr"], "runs": runs}
    out = experiment_figure(paths + (records if with_bars else []), spec, tmp_path / "fig" / "main.png")
    from PIL import Image

    with Image.open(out) as img:
        width, height = img.size
    # The bars add a row under the curves.
    assert (height > width * 0.6) == with_bars


def test_the_tables_and_figures_jobs_start_without_torch(subprocess_env):
    """`import torch` is ~2 CPU-seconds of every job's start-up; jobs that draw or tabulate never need it."""
    import subprocess
    import sys

    code = "import sys, soften.__main__, soften.reporting.tables, soften.reporting.plots; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_transfer_figure_draws_one_bar_per_method_checkpoint_and_crafted_set(tmp_path, monkeypatch):
    """A transfer experiment's figure is drawn from its transfer evaluations (not learning
    curves): Best and Final per method in each (source · attack) group, mean over seeds."""
    import soften.reporting.plots as plots

    drawn = []
    real_bar = plots.plt.Axes.bar

    def spy(ax, x, height, *args, **kwargs):
        drawn.append((round(float(x), 3), float(height), kwargs.get("yerr")))
        return real_bar(ax, x, height, *args, **kwargs)

    monkeypatch.setattr(plots.plt.Axes, "bar", spy)
    paths = []
    for method in ("pgd-at", "pgd-at+sglr"):
        for seed in (0, 1):
            for ckpt in ("best", "final"):
                for attack in ("pgd10", "cw20"):
                    acc = {"pgd-at": 0.50, "pgd-at+sglr": 0.60}[method] + 0.02 * seed - (0.1 if ckpt == "final" else 0)
                    rec = {"dataset": "digits", "noise": "none", "arch": "cnn", "method": method, "seed": seed,
                           "checkpoint": ckpt, "attack": attack, "source_name": "src", "accuracy": acc,
                           "source_accuracy": 0.4, "n": 100}
                    paths.append(tmp_path / f"{method}-{seed}-{ckpt}-{attack}.json")
                    paths[-1].write_text(json.dumps(rec))
    spec = {"name": "transfer", "kind": "transfer", "methods": ["pgd-at", "pgd-at+sglr"], "sources": ["src"],
            "attacks": ["pgd10", "cw20"]}
    out = experiment_figure(paths, spec, tmp_path / "transfer.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert len(drawn) == 2 * 2 * 2                       # sets x methods x checkpoints
    heights = sorted(round(h, 6) for _, h, _ in drawn)
    # by hand: mean over seeds 0 and 1 (+0.01), in percent
    assert heights == sorted([41.0, 41.0, 51.0, 51.0, 51.0, 51.0, 61.0, 61.0])
    assert all(yerr is not None and yerr == pytest.approx(100 * 0.02 / 2 ** 0.5) for _, _, yerr in drawn)
