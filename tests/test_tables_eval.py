"""Transfer, calibration and sanity tables from hand-written result records."""

from __future__ import annotations

import json

import pandas as pd

from soften.tables import make_tables

RUN = {"dataset": "digits", "noise": "none", "arch": "cnn", "method": "pgd-at"}


def write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_tables_by_record_type(tmp_path):
    files = []
    for seed, (best, final) in enumerate([(0.50, 0.40), (0.70, 0.40)]):
        run = tmp_path / f"seed{seed}"
        for ckpt, acc in (("best", best), ("final", final)):
            base = {**RUN, "seed": seed, "checkpoint": ckpt, "checkpoint_epoch": 1}
            files.append(write(run / "eval" / f"{ckpt}-natural.json", {**base, "attack": "natural", "n": 10,
                                                                        "correct": 9, "accuracy": 0.9, "seconds": 0.1}))
            for attack, shift in (("pgd10", 0.0), ("cw20", 0.1)):
                files.append(write(run / "transfer" / "src" / f"{ckpt}-{attack}.json", {
                    **base, "record": "transfer", "source_name": "src", "attack": attack, "n": 10,
                    "correct": round(10 * (acc + shift)), "accuracy": acc + shift, "source_accuracy": 0.1}))
            files.append(write(run / "calibration" / f"{ckpt}.json", {
                **base, "record": "calibration", "n": 10, "n_bins": 15,
                "inputs": {"clean": {"ece": 0.1 * (seed + 1), "accuracy": 0.9, "mean_confidence": 0.8},
                           "pgd10": {"ece": 0.3, "accuracy": 0.5, "mean_confidence": 0.6}}}))
        files.append(write(run / "sanity" / "best.json", {
            **RUN, "seed": seed, "checkpoint": "best", "record": "sanity", "n": 10, "clean_accuracy": 0.9,
            "eps_sweep": [{"eps": 1.0, "steps": 20, "accuracy": 0.0 if seed == 0 else 0.2}],
            "checks": {"unbounded_eps_reaches_zero": {"passed": seed == 0, "detail": ""}}, "passed": seed == 0}))
    make_tables(files, tmp_path / "tables", transfer_order=["pgd10", "cw20"])
    transfer = pd.read_csv(tmp_path / "tables" / "transfer.csv")
    row = transfer.iloc[0]
    # pgd10: best mean (50 + 70) / 2 = 60, sample std 14.14; final 40 both; diff 10 and 30 -> 20 ± 14.14
    assert row["src · pgd10 Best"] == "60.00 ± 14.14" and row["src · pgd10 Final"] == "40.00 ± 0.00"
    assert row["src · pgd10 Diff"] == "20.00 ± 14.14" and row["src · cw20 Best"] == "70.00 ± 14.14"
    assert list(transfer.columns).index("src · pgd10 Best") < list(transfer.columns).index("src · cw20 Best")
    calibration = pd.read_csv(tmp_path / "tables" / "calibration.csv")
    assert calibration.iloc[0]["clean Best"] == "0.150 ± 0.071" and calibration.iloc[0]["pgd10 Diff"] == "0.000 ± 0.000"
    sanity = (tmp_path / "tables" / "sanity.md").read_text()
    assert "FAIL" in sanity and "pass" in sanity
    assert (tmp_path / "tables" / "main.md").exists()
