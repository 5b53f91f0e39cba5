"""The shipped paper configs resolve to the papers' settings, and each paper table is
exactly the runs it needs.

Every expected value below is written from the papers (section cited), not read from
soften's code: a wrong default, a leaked demo value or a typo in a config fails here.
"""

from __future__ import annotations

import collections
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soften.pipeline import layout
from soften.pipeline.config import load_config, required_runs, resolve_eval, resolve_run
from soften.devices import PLACEMENT_KEYS

from _dag import DryJob, dry_run_jobs

REPO = Path(__file__).resolve().parents[1]
EPS = 8 / 255          # SGLR §4, ADR §5.1
STEP = 2 / 255         # ADR §5.1 (training PGD-10, step 2/255)


@pytest.fixture(scope="module")
def sglr():
    return load_config(REPO / "config" / "sglr.yaml")


@pytest.fixture(scope="module")
def adr():
    return load_config(REPO / "config" / "adr.yaml")


def specs(cfg):
    return [resolve_run(cfg, r.dataset, r.noise, r.arch, r.method, r.seed) for r in required_runs(cfg)]


def test_sglr_recipe_is_section_4(sglr):
    for spec in specs(sglr):
        tr = spec["training"]
        # SGLR §4: SGD, momentum 0.9, weight decay 5e-4, lr 0.1, 200 epochs, /10 at 100 and 150.
        assert (tr["epochs"], tr["lr"], tr["momentum"], tr["weight_decay"]) == (200, 0.1, 0.9, 5e-4)
        assert (tr["lr_milestones"], tr["lr_gamma"], tr["nesterov"]) == ([100, 150], 0.1, False)
        assert spec["threat"]["eps"] == pytest.approx(EPS)                     # §4: eps = 8/255
        assert spec["scale"] == "full" and spec["data_subset"] is None


def test_sglr_method_hyperparameters(sglr):
    by_method = {s["method"]: s["method_params"] for s in specs(sglr) if s["dataset"] == "cifar10" and s["arch"] == "resnet18"}
    assert by_method["pgd-at+sglr"]["sglr"]["r"] == 0.2                        # §4 / Tab. 4
    assert by_method["pgd-at+sglr"]["sglr"]["temperature"] == 1.5              # Tab. 4 cell equal to Tab. 2's row
    assert by_method["pgd-at+ls"]["ls"]["r"] == 0.2                            # §4: LS with r = 0.2
    te = by_method["pgd-at+te"]["te"]
    assert (te["start_epoch"], te["ramp_end_epoch"]) == (90, 150)              # Dong et al. code, 200 epochs
    assert by_method["kd-swa"]["swa"]["start_epoch"] == 56                     # Chen et al.: after the 1st decay
    assert by_method["pgd-at+awp"]["awp"]["gamma"] == 0.01                     # Wu et al. AT-AWP (SGLR silent)
    assert by_method["trades+sglr"]["trades"]["beta"] == 6.0                   # Zhang et al. 2019
    # TRADES as the authors' repository has it (devicerxx/SGLS losses/__pycache__/trades.cpython-38.pyc)
    assert {s["method_params"]["trades"]["code"] for s in specs(sglr) if "trades" in s["method_params"]} == {"sgls"}
    # Tab. 4: r in {0, .2, .4, .6, .8} x T in {1, 1.5, 2}, 15 cells.
    cells = {(p["sglr"]["r"], p["sglr"]["temperature"]) for m, p in by_method.items()
             if m in sglr["experiments"]["tab4"]["methods"]}
    assert cells == {(r, t) for r in (0.0, 0.2, 0.4, 0.6, 0.8) for t in (1.0, 1.5, 2.0)}


def test_sglr_evaluation_is_the_papers(sglr):
    aa = resolve_eval(sglr, "cifar10", "aa")
    assert aa["params"]["kind"] == "autoattack" and aa["params"]["version"] == "standard"   # §4
    assert aa["n_examples"] is None and "settings" not in aa["params"]                      # full test set, full budget
    pgd = resolve_eval(sglr, "cifar10", "pgd20")["params"]
    assert (pgd["kind"], pgd["steps"]) == ("pgd", 20) and pgd["eps"] == pytest.approx(EPS)  # §4 PGD-20
    sources = {name: (s["arch"], s["method"]) for name, s in sglr["transfer"]["sources"].items()}
    assert sorted(sources.values()) == [("resnet34", "pgd-at"), ("resnet50", "pgd-at")]    # Tab. B.3
    assert sglr["transfer"]["attacks"]["pgd10"]["steps"] == 10                              # Tab. B.3 PGD-10
    assert set(sglr["calibration"]["inputs"]) >= {"pgd10", "square"}                       # Tab. B.1


ADR_TAU_LAMBDA = {   # ADR §5.1: (tau high -> low, lambda low -> high) per dataset
    "cifar10": (2.5, 2.0, 0.7, 0.95),
    "cifar100": (1.5, 1.0, 0.7, 0.95),
    "tinyimagenet": (2.0, 1.5, 0.5, 0.9),
}


def test_adr_recipe_is_section_5_1(adr):
    for spec in specs(adr):
        tr = spec["training"]
        epochs = 80 if spec["dataset"] == "tinyimagenet" else 200              # §5.1
        assert tr["epochs"] == epochs
        assert tr["lr_milestones"] == [epochs // 2, epochs * 3 // 4]           # /10 at 50% and 75%
        assert (tr["lr"], tr["momentum"], tr["nesterov"], tr["weight_decay"], tr["batch_size"]) == (0.1, 0.9, True, 5e-4, 128)
        assert tr["val_attack_steps"] == 10                                     # PGD-10 selects the best checkpoint
        threat = spec["threat"]
        assert (threat["eps"], threat["alpha"], threat["steps"]) == pytest.approx((EPS, STEP, 10))
        assert spec["augment"] == {"crop_padding": 4, "flip": True}             # random crop, 4-px padding, flip
        params = spec["method_params"]
        if "adr" in params:
            a = params["adr"]
            assert a["ema_decay"] == 0.995
            assert (a["temperature_high"], a["temperature_low"], a["lam_low"], a["lam_high"]) == ADR_TAU_LAMBDA[spec["dataset"]]
        if "wa" in params:
            assert params["wa"]["decay"] == 0.995                               # WA decay 0.995
        if "awp" in params:
            assert params["awp"]["gamma"] == 0.005                              # "radius 0.005 for AWP"
        if "trades" in params:
            assert params["trades"]["beta"] == 6.0                              # beta = 6
            assert params["trades"]["code"] == "adr"                            # yuyuwu5/ADR src/advTrainer.py


def test_adr_evaluation_is_the_papers(adr):
    for dataset in ("cifar10", "cifar100", "tinyimagenet"):
        aa = resolve_eval(adr, dataset, "aa")
        assert aa["params"]["version"] == "standard" and aa["n_examples"] is None and "settings" not in aa["params"]
    assert resolve_eval(adr, "cifar10", "pgd100")["params"]["steps"] == 100    # Tab. 7: PGD-100
    assert adr["experiments"]["tab7"]["seeds"] == [0, 1, 2, 3, 4]              # Tab. 7: five runs
    assert adr["sanity"]["eps_steps"] == 100                                    # App. E Fig. 6a: PGD-100


@functools.lru_cache(maxsize=None)
def dry_run(config: str) -> str:
    """``snakemake -n -p all TABLE...``: every table of ``config`` a target, in one DAG (one
    Snakemake start per config instead of one per table: a target's own DAG is its job and,
    transitively, the jobs making its inputs, which :func:`target_jobs` reads back out)."""
    tables = list(yaml.safe_load((REPO / "config" / config).read_text())["experiments"])
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "all", *tables, "--cores", "1",
                           "--configfile", str(REPO / "config" / config), "--workflow-profile", "none"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@functools.lru_cache(maxsize=None)
def planned(config: str) -> tuple[list[DryJob], dict[str, DryJob]]:
    """:func:`dry_run`'s jobs, parsed once, and the job making each output file."""
    jobs = dry_run_jobs(dry_run(config))
    return jobs, {path: job for job in jobs for path in job.output}


def target_jobs(config: str, target: str) -> list[DryJob]:
    """The jobs ``snakemake TARGET`` plans: the target rule's job and every job it needs."""
    jobs, maker = planned(config)
    todo, seen = [next(j for j in jobs if j.rule == target)], {}
    while todo:
        job = todo.pop()
        if id(job) not in seen:
            seen[id(job)] = job
            todo += [maker[path] for path in job.input if path in maker]
    return list(seen.values())


def train_specs(jobs: list[DryJob]) -> list[dict]:
    return [json.loads(m) for j in jobs for m in re.findall(r"soften train --spec '(\{.*?\})' --out", j.shell)]


# Training runs each paper table needs, counted from the papers' tables.
TABLE_RUNS = [
    ("sglr.yaml", "tab2", 7 + 1),       # 7 rows; KD-SWA's standard teacher (KD-AT's PGD-AT teacher is a row)
    ("sglr.yaml", "tab3", 2 * 4),       # CIFAR-10/100 x AT, AT+SGLR, TRADES, TRADES+SGLR
    ("sglr.yaml", "tab4", 15),          # r x T
    ("sglr.yaml", "tabB1", 2),          # AT, AT+SGLR
    ("sglr.yaml", "fig4", 6 * 3),       # 6 noise settings x hard / smoothed / self-guided labels
    ("sglr.yaml", "tabB3", 2 + 2),      # 2 targets + the ResNet-34 and ResNet-50 sources
    ("sglr.yaml", "tabB4", 2 * 2),      # ResNet-18 and WRN-34-10 x AT, AT+SGLR
    ("adr.yaml", "tab1", 3 * 4),        # 3 datasets x AT, AT+ADR, TRADES, TRADES+ADR
    ("adr.yaml", "tab2", 3 * 2 * 6),    # 3 datasets x 2 archs x 6 rows
    ("adr.yaml", "tab4", 3 * 6),        # 3 datasets x 6 rows
    ("adr.yaml", "tab7", 2 * 5),        # AT, AT+ADR x 5 runs
    ("adr.yaml", "appE", 1),
]


@pytest.mark.parametrize("config,table,runs", TABLE_RUNS)
def test_snakemake_plans_exactly_the_runs_of_each_paper_table(config, table, runs):
    counts = collections.Counter(job.rule for job in target_jobs(config, table))
    assert counts["train"] == runs
    assert counts["tables"] == 1 and counts["figures"] == 1 and counts[table] == 1


def test_snakemake_passes_the_librarys_specs_nothing_from_the_demo():
    """What a job gets through the real Snakefile is what load_config(config/adr.yaml) resolves."""
    cfg = load_config(REPO / "config" / "adr.yaml")
    got = train_specs(target_jobs("adr.yaml", "tab1"))
    assert len(got) == 12
    for spec in got:
        want = resolve_run(cfg, spec["dataset"], spec["noise"], spec["arch"], spec["method"], spec["seed"])
        assert spec == {k: v for k, v in want.items() if k not in PLACEMENT_KEYS}  # passed outside the spec
        if "adr" in spec["method_params"]:
            assert spec["method_params"]["adr"]["ema_decay"] == 0.995   # the demo says 0.9


def test_required_runs_of_the_paper_configs():
    # SGLR: 8 + 6 + 14 + 18 + 2 + 2 = 50 runs, less KD-SWA's teacher = Fig. 4's standard/none run.
    assert len(required_runs(load_config(REPO / "config" / "sglr.yaml"))) == 49
    # ADR: 12 + 30 + 12 + 8 (Tab. 2/4/7 add 30, 12 and 8 runs to Tab. 1's 12) + 0.
    assert len(required_runs(load_config(REPO / "config" / "adr.yaml"))) == 62
    assert len(layout.grid_runs(load_config(REPO / "config" / "adr.yaml"))) == 62


# ------------------------------------------------------------------ protocols (docs/evaluation.md)

def test_paper_configs_run_both_protocols(sglr, adr):
    """Best on validation and on the test set (as devicerxx/SGLS main_adv.py and yuyuwu5/ADR
    advTrainer.py select); SGLR's PGD-20 also as its pgd_attack.py (eps 0.031, step 0.003)."""
    for cfg in (sglr, adr):
        assert cfg["training"]["select_on"] == ["validation", "test"]
        for name, exp in cfg["experiments"].items():
            if exp.get("published") and exp["kind"] != "noise-gap":
                assert {"best", "best_test"} <= set(exp["checkpoints"]), name
    code = resolve_eval(sglr, "cifar10", "pgd20-sgls-code")["params"]
    assert (code["steps"], code["eps"], code["alpha"]) == (20, 0.031, 0.003)
    for name in ("tab2", "tab3", "tab4", "tabB4"):
        assert {"pgd20", "pgd20-sgls-code"} <= set(sglr["experiments"][name]["attacks"])
    for dataset in ("cifar10", "cifar100", "tinyimagenet"):
        assert resolve_eval(adr, dataset, "aa-adr-code")["params"]["version"] == "torchattacks-3.3"


def test_snakemake_plans_adr_code_autoattack_for_every_autoattack_table():
    """Every ADR table that reports AutoAttack (1, 2, 4) gets torchattacks-3.3 evaluations on the
    checkpoints it shows, beside the standard ones; the train jobs write best_test.pt."""
    cfg = load_config(REPO / "config" / "adr.yaml")
    out = "\n".join(", ".join(job.output) for job in target_jobs("adr.yaml", "all"))
    planned = set(re.findall(r"(\S+/eval/\S+-aa(?:-adr-code)?\.json)", out))
    for name in ("tab1", "tab2", "tab4"):
        exp = cfg["experiments"][name]
        assert "aa" in exp["attacks"] and "aa-adr-code" in exp["attacks"]
        for run in layout.experiment_runs(cfg, name):
            for ckpt in exp["checkpoints"]:
                assert layout.eval_path(cfg, run, ckpt, "aa-adr-code") in planned
                assert layout.eval_path(cfg, run, ckpt, "aa") in planned
    assert not any("-aa-adr-code" in p for p in planned if "/seed1/" in p)   # Tab. 7 (seeds 1-4) reports no AA
    assert len(re.findall(r"\S+/best_test\.pt", out)) >= len(required_runs(cfg))
