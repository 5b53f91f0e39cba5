"""ADR's paper config (config/adr.yaml), its whole DAG at the smoke scale: tests/_paper_smoke.py."""

from __future__ import annotations

import numpy as np
import pytest

from soften.pipeline.config import SMOKE

from _paper_smoke import archives, check_tables_and_figures, eval_records, run_smoke  # noqa: F401 (archives: a fixture)

pytestmark = pytest.mark.slow


def test_adr_config_smoke_end_to_end(archives, tmp_path, subprocess_env, warm_python):
    proc = run_smoke("adr.yaml", archives, tmp_path, subprocess_env, warm_python)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tables = check_tables_and_figures(tmp_path, "adr.yaml")
    results = tmp_path / "results" / "adr-smoke"
    assert "tinyimagenet" in tables["tab1"] and "wrn34-10" in tables["tab2"]
    images = np.load(tmp_path / "resources-smoke" / "datasets" / "tinyimagenet.npz")["x_test"]
    assert images.shape[1:] == (64, 64, 3)                                              # the real 64x64 reader
    pgd100 = eval_records(results, "eval/best-pgd100.json")
    assert len(pgd100) == 10 and {r["seed"] for r in pgd100} == {0, 1, 2, 3, 4}          # Tab. 7: five runs each
    sanity = eval_records(results, "sanity/*.json")
    assert len(sanity) == 1 and sanity[0]["method"] == "pgd-at+adr"
    # Both protocols: Best on validation and on the test set; AutoAttack standard and as ADR's
    # robust_eval.py (torchattacks 3.3.0), the smoke scale's cut recorded.
    assert len(eval_records(results, "eval/best_test-pgd100.json")) == 10
    code = eval_records(results, "eval/*-aa-adr-code.json")
    assert {r["checkpoint"] for r in code} == {"best", "best_test", "final"}
    assert all(r["params"]["version"] == "torchattacks-3.3" for r in code)
    assert all(r["params"]["settings"] == SMOKE["torchattacks_settings"] for r in code)
    for name in ("tab1", "tab2", "tab4"):
        assert "aa-adr-code" in tables[name] and "(the authors' code: torchattacks-3.3)" in tables[name], name
