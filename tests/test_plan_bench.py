"""``plan`` counts runs and costs them as a hand computation does; ``bench --quick``
writes its JSON and Markdown on CPU, and ``plan`` reads that JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soften.pipeline import layout
from soften.pipeline.config import load_config, required_runs
from soften.tools.plan import load_figures, plan, render

BENCH = {  # a benchmark JSON with round numbers
    "machine": {"device": "cuda:0", "device_name": "Test GPU"},
    "pgd_at": [{"arch": "resnet18", "amp": "auto", "s_per_epoch": 100.0},
               {"arch": "resnet18", "amp": "off", "s_per_epoch": 250.0}],
    "overheads": {"methods": {"pgd-at": {"ratio": 1.0}, "pgd-at+sglr": {"ratio": 1.05}}},
    "monitoring": {"arch": "resnet18", "s_per_epoch": 22.0},   # 3,000 images x 22 units: 1/3000 s per image-unit
    "autoattack": {"minutes_10k_typical": 60.0},
}


@pytest.fixture()
def tiny(tmp_path):
    cfg = {
        "results_dir": str(tmp_path / "results"), "resources_dir": str(tmp_path / "resources"),
        "datasets": {"cifar10": {"source": "cifar10", "val_size": 1000,
                                 "threat": {"eps": 0.03, "alpha": 0.008, "steps": 10}}},
        "training": {"epochs": 2, "lr_milestones": [1], "test_subset": 100, "val_attack_steps": 10},
        "evaluation": {"attacks": {"natural": {"kind": "natural"}, "aa": {"kind": "autoattack"}}, "n_examples": 1000},
        "experiments": {"e1": {"datasets": ["cifar10"], "noise": ["none"], "archs": ["resnet18"],
                               "methods": ["pgd-at", "pgd-at+sglr"], "seeds": [0], "attacks": ["natural", "aa"],
                               "checkpoints": ["best"]}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    return load_config([path]), bench


# By hand: 49,000 training images (50,000 less val_size); PGD-AT fp32 epoch 250 s x 49/50 = 245 s,
# SGLR x 1.05 = 257.25 s; monitoring (1,000 val + 100 test + 100 train images) x PGD-10's
# 22 units x 1/3000 s = 8.8 s per epoch (fp32 either way); 2 epochs each.
PGD_AT_S = 2 * (245 + 8.8)
SGLR_S = 2 * (257.25 + 8.8)
# With bf16 training: the bench's bf16 ("auto" on CUDA) epoch is 100 s, 0.4x fp32's 250 s:
# PGD-AT 100 x 49/50 = 98 s, SGLR 102.9 s.
PGD_AT_BF16_S = 2 * (98 + 8.8)
SGLR_BF16_S = 2 * (102.9 + 8.8)
# Evaluation per run (best only, 1,000 images): natural 1,000 x 1 unit x 250 / (50,000 x 23) s;
# AutoAttack 60 min x 1,000 / 10,000.
NATURAL_S = 1000 * 250 / (50_000 * 23)
AA_S = 60 * 60 * 1000 / 10_000


def test_plan_counts_and_costs_as_by_hand(tiny):
    cfg, bench = tiny
    est = plan(cfg, load_figures(bench))
    (row,) = est["experiments"]
    assert (row.runs, row.new_runs) == (2, 2)
    assert row.train_hours == pytest.approx((PGD_AT_S + SGLR_S) / 3600)
    assert row.train_hours_bf16 == pytest.approx((PGD_AT_BF16_S + SGLR_BF16_S) / 3600)
    assert row.eval_hours == pytest.approx(2 * (NATURAL_S + AA_S) / 3600)
    assert est["total"].hours == pytest.approx(row.hours)
    assert est["total"].hours_bf16 == pytest.approx(row.train_hours_bf16 + row.eval_hours)
    assert "bf16 steps measured 0.40x fp32" in render(est)


def test_plan_skips_what_exists(tiny):
    cfg, bench = tiny
    done = layout.Run("cifar10", "none", "resnet18", "pgd-at", 0)
    for path in (layout.checkpoint_path(cfg, done, "final"), layout.eval_path(cfg, done, "best", "aa")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("{}")
    (row,) = plan(cfg, load_figures(bench))["experiments"]
    assert (row.runs, row.new_runs) == (2, 1)
    assert row.train_hours == pytest.approx(SGLR_S / 3600)
    assert row.train_hours_bf16 == pytest.approx(SGLR_BF16_S / 3600)
    assert row.eval_hours == pytest.approx((2 * NATURAL_S + AA_S) / 3600)
    assert row.new == ["cifar10/none/resnet18/pgd-at+sglr/seed0"]


def test_a_broken_benchmark_file_is_named(tmp_path):
    bad = tmp_path / "bench.json"
    bad.write_text('{"pgd_at": [')
    with pytest.raises(ValueError, match="bench.json is not a soften bench result"):
        load_figures(bad)


def test_without_a_benchmark_the_reference_is_used_and_labelled(tmp_path):
    figures = load_figures(None, device_name="No Such GPU", results_dir=tmp_path)
    assert "ADR Tab. 6" in figures.label and "assumption" in figures.label
    assert figures.arch_epoch_s("resnet18") == 81.0
    assert figures.arch_epoch_s("wrn34-10") == pytest.approx(7 * 81.0)
    assert figures.bf16_ratio == 0.6 and "assumed" in figures.bf16_label   # stated, not measured


@pytest.mark.parametrize("configfile, experiments", [
    ("config/sglr.yaml", {"tab2", "tab3", "tab4", "tabB1", "fig4", "tabB3", "tabB4"}),
    ("config/adr.yaml", None),
])
def test_paper_configs_get_per_experiment_estimates(repo, configfile, experiments):
    cfg = load_config([repo / configfile], {"results_dir": "/nonexistent/results"})
    est = plan(cfg, load_figures(None, device_name="No Such GPU"))
    names = {row.name for row in est["experiments"]}
    assert names == (experiments or set(cfg["experiments"]))
    for row in est["experiments"]:
        assert row.runs == row.new_runs > 0 and row.hours > 0
    rows = {row.name: row for row in est["experiments"]}
    if configfile == "config/sglr.yaml":
        # Tab. 2: seven methods; KD-SWA also needs a standard-training teacher (KD-AT's PGD-AT teacher is in the grid).
        assert rows["tab2"].runs == 8
        # Tab. B.4's WRN-34-10 runs cost 7x ResNet-18's: more than Tab. 3's eight ResNet-18 runs.
        assert rows["tabB4"].train_hours > rows["tab3"].train_hours
    table = render(est)
    assert ("| experiment | runs | new runs | GPU-hours left, fp32 (train + eval) | with bf16 training (train + eval) |"
            in table)
    for row in est["experiments"]:   # bf16 shortens the training steps only (0.6x assumed), never evaluation
        assert row.train_hours_bf16 < row.train_hours and row.hours_bf16 == pytest.approx(row.train_hours_bf16 + row.eval_hours)
    assert est["total"].runs == len(required_runs(cfg)) >= max(r.runs for r in est["experiments"])
    assert est["total"].hours <= sum(r.hours for r in est["experiments"])  # shared runs counted once


@pytest.mark.slow
def test_bench_quick_writes_json_and_table_that_plan_reads(repo, tmp_path, subprocess_env):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "soften", "bench", "--quick", "--device", "cpu", "--out", str(out)],
                          cwd=repo, env=subprocess_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (js,) = out.glob("*-quick.json")
    data = json.loads(js.read_text())
    assert data["mode"] == "quick" and data["machine"]["device"] == "cpu"
    assert data["machine"]["torch"]
    for row in data["pgd_at"]:
        assert row["s_per_epoch"] > 0
    assert set(data["overheads"]["methods"]) >= {"pgd-at", "pgd-at+sglr", "pgd-at+adr", "pgd-at+awp", "trades"}
    assert data["autoattack"]["minutes_10k_upper_bound"] >= data["autoattack"]["minutes_10k_typical"] > 0
    assert data["mini"]["epochs"] == 2 and set(data["mini"]["accuracy"]) == {"natural", "pgd20", "cw20", "aa"}
    md = js.with_suffix(".md").read_text()
    assert data["machine"]["device_name"] in md and "pgd-at+sglr / PGD-AT" in md
    proc = subprocess.run([sys.executable, "-m", "soften", "plan", "--configfile", "config/sglr.yaml", "--bench", str(js)],
                          cwd=repo, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "measured: " + data["machine"]["device_name"] in proc.stdout and "| tab2 | 8 | " in proc.stdout


@pytest.mark.slow
def test_jobs_sharing_a_device_run_concurrently_and_report(subprocess_env, monkeypatch):
    """The jobs-per-GPU machinery (workers, start barrier, aggregate throughput), on CPU with the small CNN."""
    from soften.tools.bench import bench_jobs_per_gpu

    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    rows = bench_jobs_per_gpu({"job_steps": 2, "batch": 4}, counts=(1, 2), device="cpu", arch="cnn")
    assert [r["jobs"] for r in rows] == [1, 2]
    assert rows[0]["gain"] == 1.0 and all(r["images_per_s"] > 0 and r["devices"] == ["cpu"] for r in rows)


def test_an_interrupted_bench_still_writes_what_it_measured(tmp_path):
    from soften.tools.bench import write

    partial = {"machine": {"device": "cpu", "device_name": "Some CPU", "device_slug": "some-cpu", "torch": "x",
                           "cuda": None, "cudnn": None, "cpu_threads": 1},
               "mode": "cpu", "started": "now", "complete": False,
               "pgd_at": [{"arch": "resnet18", "amp": "off", "batch": 8, "step_s": 2.0, "s_per_epoch": 12500.0}]}
    js, md = write(partial, tmp_path)
    assert json.loads(js.read_text())["complete"] is False
    text = md.read_text()
    assert "2000.0 ms = 12500.0 s per 50k-image epoch" in text and "Incomplete" in text
    assert load_figures(js).s_per_epoch == {"resnet18": 12500.0}


def test_one_key_sets_every_experiments_seeds_and_plan_prices_it(repo):
    """``--config seeds=3`` on a paper file: every experiment runs seeds 0, 1, 2, and plan costs
    three times the one-seed runs (ADR Tab. 7 had five seeds of its own: now three)."""
    figures = load_figures(None, device_name="No Such GPU")
    one = load_config([repo / "config/adr.yaml"], {"results_dir": "/nonexistent/results"})
    three = load_config([repo / "config/adr.yaml"], {"results_dir": "/nonexistent/results", "seeds": 3})
    assert all(exp["seeds"] == [0, 1, 2] for exp in three["experiments"].values())
    before = {r.name: r for r in plan(one, figures)["experiments"]}
    after = {r.name: r for r in plan(three, figures)["experiments"]}
    assert after["tab1"].runs == 3 * before["tab1"].runs                 # 3 datasets x 4 methods, 1 -> 3 seeds
    assert after["tab1"].train_hours == pytest.approx(3 * before["tab1"].train_hours)
    assert after["tab7"].runs == 2 * 3 and before["tab7"].runs == 2 * 5
