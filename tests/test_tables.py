import json

import pytest

from soften.tables import make_tables


def write_eval(root, method, seed, ckpt, attack, correct, n=200, noise="none"):
    d = root / "digits" / noise / "cnn" / method / f"seed{seed}" / "eval"
    d.mkdir(parents=True, exist_ok=True)
    rec = {"dataset": "digits", "noise": noise, "arch": "cnn", "method": method, "seed": seed,
           "checkpoint": ckpt, "checkpoint_epoch": 3, "attack": attack, "n": n, "correct": correct,
           "accuracy": correct / n, "seconds": 0.1}
    (d / f"{ckpt}-{attack}.json").write_text(json.dumps(rec))


def test_table_means_stds_and_best_minus_final(tmp_path):
    # pgd20 best: 50%, 60% -> 55.00 ± 7.07 ; final: 40%, 40% -> 40.00 ± 0.00 ; diff 10, 20 -> 15.00 ± 7.07
    for seed, best, final in [(0, 100, 80), (1, 120, 80)]:
        write_eval(tmp_path, "pgd-at", seed, "best", "pgd20", best)
        write_eval(tmp_path, "pgd-at", seed, "final", "pgd20", final)
        write_eval(tmp_path, "pgd-at", seed, "best", "natural", 180)
        write_eval(tmp_path, "pgd-at", seed, "final", "natural", 170)
    write_eval(tmp_path, "standard", 0, "best", "pgd20", 10)
    write_eval(tmp_path, "standard", 0, "final", "pgd20", 2)
    out = tmp_path / "tables"
    out.mkdir()
    md = make_tables([tmp_path], out, method_order=["standard", "pgd-at"], attack_order=["natural", "pgd20"])
    line = next(l for l in md.splitlines() if "pgd-at" in l)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["pgd-at", "90.00 ± 0.00", "85.00 ± 0.00", "5.00 ± 0.00",
                     "55.00 ± 7.07", "40.00 ± 0.00", "15.00 ± 7.07", "2"]
    std_line = next(l for l in md.splitlines() if "standard" in l)
    assert [c.strip() for c in std_line.strip("|").split("|")][-4:] == ["5.00", "1.00", "4.00", "1"]
    assert md.index("standard") < md.index("pgd-at")  # configured row order
    assert (out / "runs.csv").read_text().count("\n") == 11
    assert "\\toprule" in (out / "main.tex").read_text()


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no evaluation results"):
        make_tables([tmp_path], tmp_path)


def test_published_numbers_are_printed_beside_ours(tmp_path):
    for ckpt, correct in (("best", 100), ("final", 90)):
        for attack in ("natural", "pgd20"):
            d = tmp_path / "cifar10" / "none" / "resnet18" / "pgd-at+sglr" / "seed0" / "eval"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{ckpt}-{attack}.json").write_text(json.dumps({
                "dataset": "cifar10", "noise": "none", "arch": "resnet18", "method": "pgd-at+sglr", "seed": 0,
                "checkpoint": ckpt, "checkpoint_epoch": 1, "attack": attack, "n": 200, "correct": correct,
                "accuracy": correct / 200, "seconds": 1.0}))
    md = make_tables([tmp_path], tmp_path / "tables", attack_order=["natural", "pgd20"])
    paper = md.split("*Published numbers*")[1]
    row = next(l for l in paper.splitlines() if "pgd-at+sglr" in l)
    # SGLR Table 2, CIFAR-10 ResNet-18, PGD-AT+SGLR: natural 82.9/83.0/-0.1, PGD-20 56.4/55.9/0.5.
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:7] == ["pgd-at+sglr", "82.90", "83.00", "-0.10", "56.40", "55.90", "0.50"]
    assert "SGLR (CVPR 2024) Table 2" in cells[7]
