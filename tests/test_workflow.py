"""End to end: the real Snakemake workflow on a tiny digits config in a temp dir."""

import csv
import json

import pytest

from conftest import TINY_DIGITS, snakemake_all, write_config

pytestmark = pytest.mark.slow


def test_pipeline_end_to_end_then_nothing_to_do(repo, default_config, tmp_path, subprocess_env):
    grid = {"datasets": ["digits"], "noise": ["none", "symmetric-0.4"], "archs": ["cnn"],
            "methods": ["standard", "pgd-at"], "seeds": [0], "attacks": ["natural", "pgd20"]}
    tiny = {"datasets": {"digits": TINY_DIGITS}, "evaluation": {"n_examples": 100},
            "experiments": {"main": grid, "autoattack": None, "transfer": None, "calibration": None, "masking": None}}
    cfg = write_config(tmp_path / "tiny.yaml", default_config, **tiny)
    first = snakemake_all(tmp_path, cfg, subprocess_env)
    assert first.returncode == 0, first.stderr[-3000:]

    table = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "### digits · noise symmetric-0.4 · cnn" in table
    methods = [l.split("|")[1].strip() for l in table.splitlines() if l.startswith("|") and "---" not in l]
    assert methods.count("pgd-at") == 2 and methods.count("standard") == 2
    cells = list(csv.DictReader((tmp_path / "results" / "tables" / "main.csv").open()))
    # 2 noise x 2 methods, each 2 attacks x (Best, Final, Diff).
    assert len(cells) == 24 and {c["column"] for c in cells} == {"natural", "pgd20"}
    record = json.loads((tmp_path / "results/digits/none/cnn/pgd-at/seed0/eval/best-pgd20.json").read_text())
    assert record["n"] == 100 and record["params"]["steps"] == 20
    for name in ("main.csv", "main.tex"):
        assert (tmp_path / "results" / "tables" / name).stat().st_size > 0
    run = tmp_path / "results" / "digits" / "none" / "cnn" / "pgd-at" / "seed0"
    assert (run / "history.csv").read_text().count("\n") == 3
    assert (tmp_path / "results" / "logs" / "train" / "digits" / "none" / "cnn" / "pgd-at" / "seed0.log").exists()

    figure = tmp_path / "results" / "figures" / "main.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    second = snakemake_all(tmp_path, cfg, subprocess_env)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


@pytest.mark.xdist_group("every_rule_run")
def test_every_evaluation_rule_runs_on_a_tiny_grid(every_rule_run):
    """The default config's whole evaluation suite (AutoAttack, CW, transfer,
    calibration, sanity), shrunk to one 2-epoch run and a few test images
    (conftest.every_rule_run; test_report.py reads the same run)."""
    tmp_path, _, proc = every_rule_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = tmp_path / "results" / "tables"
    header = next(l for l in (tables / "main.md").read_text().splitlines() if l.startswith("|"))
    for column in ("natural Best", "pgd20 Best", "cw20 Final"):
        assert column in header
    assert "aa Best" in next(l for l in (tables / "autoattack.md").read_text().splitlines() if l.startswith("|"))
    for name in ("transfer", "calibration", "masking"):
        assert "pgd-at" in (tables / f"{name}.md").read_text(), name
    run = tmp_path / "results" / "digits" / "none" / "cnn" / "pgd-at" / "seed0"
    aa = json.loads((run / "eval" / "best-aa.json").read_text())
    assert aa["n"] == 10 and not (run / "eval" / "final-aa.json").exists()
    for name in ("calibration", "masking", "transfer"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    crafted = list((tmp_path / "results" / "digits" / "transfer" / "cnn-at-s100").glob("*.pt"))
    assert sorted(p.stem for p in crafted) == ["cw20", "pgd10"]
