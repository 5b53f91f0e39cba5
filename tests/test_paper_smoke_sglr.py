"""SGLR's paper config (config/sglr.yaml), its whole DAG at the smoke scale: tests/_paper_smoke.py."""

from __future__ import annotations

import json

import pytest

from soften.pipeline.config import SMOKE

from _paper_smoke import archives, check_tables_and_figures, eval_records, run_smoke  # noqa: F401 (archives: a fixture)

pytestmark = pytest.mark.slow


def test_sglr_config_smoke_end_to_end(archives, tmp_path, subprocess_env, warm_python):
    proc = run_smoke("sglr.yaml", archives, tmp_path, subprocess_env, warm_python)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tables = check_tables_and_figures(tmp_path, "sglr.yaml")
    results = tmp_path / "results" / "sglr-smoke"
    assert "sglr.r" in tables["tab4"] and "sglr.temperature" in tables["tab4"]      # the ablation's parameters
    assert "resnet34-at · pgd10" in tables["tabB3"]                                  # black-box transfer columns
    assert "symmetric-0.8" in tables["fig4"] and "asymmetric-0.4" in tables["fig4"]   # noise-gap columns
    aa = eval_records(results, "eval/*-aa.json")
    # AutoAttack standard, every attack of it run by the reference package, with the smoke
    # scale's budget cut and recorded (the full-scale settings are checked in test_paper_configs)
    assert aa and all(r["params"]["version"] == "standard" for r in aa)
    assert all(r["params"]["settings"] == SMOKE["autoattack_settings"] for r in aa)
    assert all(r["run_spec"]["scale"] == "smoke" for r in aa)
    wrn = results / "cifar10" / "none" / "wrn34-10" / "pgd-at+sglr" / "seed0"
    assert (wrn / "history.csv").exists() and (wrn / "eval" / "final-aa.json").exists()
    # keep_checkpoints is false at the smoke scale: read checkpoints and resume state are gone
    assert not list(results.rglob("*.pt")) or all("transfer" in str(p) for p in results.rglob("*.pt"))
    assert len(list((results / "cifar10" / "transfer").rglob("*.pt"))) == 4           # 2 sources x 2 attacks
    assert list(results.rglob("calibration/*.json"))
    noise = json.loads((tmp_path / "resources-smoke" / "noise" / "cifar10" / "asymmetric-0.4.json").read_text())
    assert noise["kind"] == "asymmetric"
    # Both protocols (docs/evaluation.md): Best on validation and on the test set; PGD-20 as the paper
    # states and as the authors' pgd_attack.py (eps 0.031, step 0.003).
    for name in ("tab2", "tab3", "tab4", "tabB1", "tabB3", "tabB4"):
        assert "Best(test)" in tables[name] and "(the authors' code: on the test set)" in tables[name], name
    code = eval_records(results, "eval/best_test-pgd20-sgls-code.json")
    assert code and all((r["params"]["eps"], r["params"]["alpha"]) == (0.031, 0.003) for r in code)
