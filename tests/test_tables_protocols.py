"""Tables with both protocols side by side: the sound one (validation-selected Best, AutoAttack
standard, the paper's PGD) and the authors' code's (test-selected Best, torchattacks 3.3.0,
SGLR's pgd_attack.py). Only the cells measured as the paper's code did are compared."""

import pandas as pd

from test_tables import EPS, FULL_RUN, record, rows, spec

from soften.reporting.tables import make_table


def adr_records(root):
    """AT+ADR on CIFAR-10, 10,000 images: natural and both AutoAttacks on best, best_test, final."""
    run_spec = {**FULL_RUN, "base_method": "pgd-at+adr", "method_params": {}}
    files = []
    correct = {"natural": (8200, 8250, 8500), "aa": (5000, 5050, 4700), "aa-adr-code": (5100, 5150, 4800)}
    params = {"natural": {"kind": "natural", "eps": EPS},
              "aa": {"kind": "autoattack", "version": "standard", "eps": EPS},
              "aa-adr-code": {"kind": "autoattack", "version": "torchattacks-3.3", "eps": EPS}}
    for attack, values in correct.items():
        for ckpt, c in zip(("best", "best_test", "final"), values):
            files.append(record(root, dataset="cifar10", arch="resnet18", method="pgd-at+adr", seed=0, ckpt=ckpt,
                                attack=attack, correct=c, n=10000, run_spec=run_spec, params=params[attack]))
    return files


def test_both_protocols_shown_and_only_the_authors_code_cells_compared(tmp_path):
    files = adr_records(tmp_path)
    attacks = ["aa", "aa-adr-code", "natural"]
    configs = {"aa": {"kind": "autoattack", "version": "standard"},
               "aa-adr-code": {"kind": "autoattack", "version": "torchattacks-3.3"}, "natural": {"kind": "natural"}}
    md = make_table(files, spec(methods=["pgd-at+adr"], attacks=attacks, published="adr-tab1",
                                checkpoints=["best", "best_test", "final"], attack_configs=configs), tmp_path / "t.md")
    header = next(line for line in md.splitlines() if line.strip("| ").startswith("method"))
    assert [h.strip() for h in header.strip("|").split("|")][1:6] == [
        "aa Best", "aa Best(test)", "aa Final", "aa Diff", "aa Diff(test)"]
    cells = pd.read_csv(tmp_path / "t.csv").set_index(["column", "part"])
    # ADR Table 1, AT+ADR CIFAR-10: AA 50.38 / 47.18 / 3.20, natural 82.41 / 85.08 / -2.67.
    comparable = {("aa-adr-code", "Best(test)"), ("aa-adr-code", "Final"), ("aa-adr-code", "Diff(test)"),
                  ("natural", "Best(test)"), ("natural", "Final"), ("natural", "Diff(test)")}
    assert {k for k, ok in cells["comparable"].items() if ok} == comparable
    # Every other cell carries exactly its mismatches as reasons, and no difference.
    val = "Best chosen on the validation set (the authors' code: on the test set)"
    aa = "AutoAttack standard (the authors' code: torchattacks-3.3)"
    expected_why = {
        ("aa", "Best"): {aa,
                         val},
        ("aa", "Best(test)"): {aa},
        ("aa", "Final"): {aa},
        ("aa", "Diff"): {aa,
                         val},
        ("aa", "Diff(test)"): {aa},
        ("aa-adr-code", "Best"): {val},
        ("aa-adr-code", "Diff"): {val},
        ("natural", "Best"): {val},
        ("natural", "Diff"): {val},
    }
    for key, why in expected_why.items():
        assert set(cells.loc[key, "why_not_comparable"].split("; ")) == why, key
        assert pd.isna(cells.loc[key, "delta"])
    # The comparable ones are differenced against the paper: 51.50 - 50.38, 48.00 - 47.18, 3.50 - 3.20.
    assert round(cells.loc[("aa-adr-code", "Best(test)"), "delta"], 2) == 1.12
    assert round(cells.loc[("aa-adr-code", "Final"), "delta"], 2) == 0.82
    assert round(cells.loc[("aa-adr-code", "Diff(test)"), "delta"], 2) == 0.30
    assert round(cells.loc[("natural", "Diff(test)"), "delta"], 2) == round((82.5 - 85.0) - (-2.67), 2)
    assert "Best(test) = Best (test, as the authors' code)" in md and "'aa-adr-code' = AutoAttack as ADR's code" in md
    assert "*The authors' code:*" in md


def test_single_value_table_matches_both_bests_to_its_best_column(tmp_path):
    """ADR Table 2 prints one (Best) value per cell: both of soften's Bests are set beside it."""
    files = [f for f in adr_records(tmp_path) if "final-" not in f.name]
    md = make_table(files, spec(methods=["pgd-at+adr"], attacks=["aa-adr-code", "natural"], published="adr-tab2",
                                checkpoints=["best", "best_test"]), tmp_path / "t.md")
    assert rows(md, "↳ paper")[0][1:5] == ["50.38", "50.38", "82.41", "82.41"]
    assert rows(md, "↳ Δ")[0][1:5] == ["n/c†", "+1.12", "n/c†", "+0.09"]


def test_sglr_pgd20_as_the_authors_script_is_the_comparable_one(tmp_path):
    run_spec = {**FULL_RUN, "base_method": "pgd-at+sglr", "method_params": {"sglr": {"r": 0.2, "temperature": 1.5}}}
    files = []
    for attack, params in (("pgd20", {"kind": "pgd", "steps": 20, "eps": EPS}),
                           ("pgd20-sgls-code", {"kind": "pgd", "steps": 20, "eps": 0.031, "alpha": 0.003})):
        for ckpt in ("best_test", "final"):
            files.append(record(tmp_path, dataset="cifar10", arch="resnet18", method="pgd-at+sglr", seed=0,
                                ckpt=ckpt, attack=attack, correct=5600, n=10000, run_spec=run_spec, params=params))
    md = make_table(files, spec(methods=["pgd-at+sglr"], attacks=["pgd20", "pgd20-sgls-code"], published="sglr-tab2",
                                checkpoints=["best_test", "final"]), tmp_path / "t.md")
    # Table 2, AT+SGLR PGD-20: 56.4 / 55.9 / 0.5; both columns are beside it, only the script's is compared.
    assert rows(md, "↳ paper")[0][1:7] == ["56.4", "55.9", "0.5"] * 2
    assert rows(md, "↳ Δ")[0][1:7] == ["n/c†"] * 3 + ["−0.4", "+0.1", "−0.5"]
    assert "PGD eps 0.03137, step 0.007843 (the authors' script: eps 0.031, step 0.003)" in md
