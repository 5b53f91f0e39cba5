"""Transfer, calibration and sanity tables from hand-written result records."""

from __future__ import annotations

import json

import pandas as pd

from soften.reporting.tables import make_table

RUN = {"dataset": "digits", "noise": "none", "arch": "cnn", "method": "pgd-at"}


def write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def cell(frame, column, part):
    row = frame[(frame.column == column) & (frame.part == part)].iloc[0]
    return round(row["mean"], 4), (None if pd.isna(row["std"]) else round(row["std"], 4))


def test_transfer_calibration_and_sanity_tables(tmp_path):
    transfer, calibration, sanity = [], [], []
    for seed, (best, final) in enumerate([(0.50, 0.40), (0.70, 0.40)]):
        run = tmp_path / f"seed{seed}"
        for ckpt, acc in (("best", best), ("final", final)):
            base = {**RUN, "seed": seed, "checkpoint": ckpt, "checkpoint_epoch": 1}
            for attack, shift in (("pgd10", 0.0), ("cw20", 0.1)):
                transfer.append(write(run / "transfer" / "src" / f"{ckpt}-{attack}.json", {
                    **base, "record": "transfer", "source_name": "src", "source": {"arch": "cnn", "method": "pgd-at"},
                    "attack": attack, "params": {"kind": attack[:2] if attack == "cw20" else "pgd"}, "n": 10,
                    "correct": round(10 * (acc + shift)), "accuracy": acc + shift, "source_accuracy": 0.1}))
            calibration.append(write(run / "calibration" / f"{ckpt}.json", {
                **base, "record": "calibration", "n": 10, "n_bins": 15,
                "inputs": {"clean": {"ece": 0.1 * (seed + 1), "params": {"kind": "natural"}},
                           "pgd10": {"ece": 0.3, "params": {"kind": "pgd", "steps": 10}}}}))
        sanity.append(write(run / "sanity" / "best.json", {
            **RUN, "seed": seed, "checkpoint": "best", "record": "sanity", "n": 10, "clean_accuracy": 0.9,
            "eps_sweep": [{"eps": 1.0, "steps": 20, "accuracy": 0.0 if seed == 0 else 0.2}],
            "checks": {"unbounded_eps_reaches_zero": {"passed": seed == 0, "detail": ""}}, "passed": seed == 0}))
    base_spec = {"methods": ["pgd-at"], "checkpoints": ["best", "final"], "variants": {}}

    make_table(transfer, {**base_spec, "name": "tr", "kind": "transfer", "sources": ["src"], "attacks": ["pgd10", "cw20"]},
               tmp_path / "tr.md")
    frame = pd.read_csv(tmp_path / "tr.csv")
    # pgd10: best (50 + 70) / 2 = 60, sample std 14.14; final 40 both; diff 10 and 30 -> 20 ± 14.14
    assert cell(frame, "src · pgd10", "Best") == (60.0, 14.1421) and cell(frame, "src · pgd10", "Final") == (40.0, 0.0)
    assert cell(frame, "src · pgd10", "Diff") == (20.0, 14.1421) and cell(frame, "src · cw20", "Best") == (70.0, 14.1421)
    header = next(line for line in (tmp_path / "tr.md").read_text().splitlines() if line.startswith("|"))
    assert header.index("src · pgd10 Best") < header.index("src · cw20 Best")

    make_table(calibration, {**base_spec, "name": "cal", "kind": "calibration"}, tmp_path / "cal.md")
    frame = pd.read_csv(tmp_path / "cal.csv")
    assert cell(frame, "clean", "Best") == (0.15, 0.0707) and cell(frame, "pgd10", "Diff") == (0.0, 0.0)
    assert "0.150 ± 0.071" in (tmp_path / "cal.md").read_text()

    make_table(sanity, {**base_spec, "name": "san", "kind": "sanity"}, tmp_path / "san.md")
    text = (tmp_path / "san.md").read_text()
    assert "FAIL" in text and "pass" in text
    assert len(pd.read_csv(tmp_path / "san.csv")) == 2
