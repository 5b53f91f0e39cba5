"""Verdicts against independent references: scipy.stats's own tests called by hand here,
one interval worked by pencil, Holm on a hand example, and a constructed table in which
every cell verdict occurs."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from soften.reporting import verdicts as V
from soften.reporting.tables import make_table


# ------------------------------------------------------------------ intervals

def test_interval_by_pencil():
    # Seeds 50, 51, 52: mean 51, sample std 1, se = 1/sqrt(3) = 0.57735; t(0.975, 2) = 4.302653
    # (printed t tables: 4.303). Half-width 4.302653 * 0.57735 = 2.48414 -> [48.516, 53.484].
    low, high = V.one_sample([50.0, 51.0, 52.0], 0.0).interval()
    assert low == pytest.approx(48.5159, abs=1e-3) and high == pytest.approx(53.4841, abs=1e-3)


def test_interval_matches_scipy_ttest_confidence_interval():
    x = [13.1, 9.8, 15.2, 11.7, 12.0]
    ci = stats.ttest_1samp(x, 10.0).confidence_interval(0.95)
    low, high = V.one_sample(x, 10.0).interval()
    assert (low, high) == pytest.approx((ci.low - 10.0, ci.high - 10.0))


# ------------------------------------------------------------------ equivalence (TOST) and cell verdicts

def test_tost_p_is_the_larger_of_two_scipy_one_sided_t_tests():
    x, p, delta = [50.3, 50.9, 50.6, 50.1], 50.0, 1.0
    lower = stats.ttest_1samp(x, p - delta, alternative="greater").pvalue
    upper = stats.ttest_1samp(x, p + delta, alternative="less").pvalue
    v = V.cell_verdict(x, p, delta)
    assert v.p_equivalence == pytest.approx(max(lower, upper))
    assert v.verdict == "reproduced" and max(lower, upper) < 0.05
    assert v.test == "t-test, 4 seeds"


def test_welch_against_a_printed_mean_std_and_seed_count():
    # ADR Tab. 7, AT robust: 52.60 ± 0.182 (population std) over 5 runs.
    x = [52.9, 52.2, 52.6, 53.1]
    paper_sample_std = 0.182 * math.sqrt(5 / 4)
    delta = 1.0
    lower = stats.ttest_ind_from_stats(np.mean(x), np.std(x, ddof=1), 4, 52.60 - delta, paper_sample_std, 5,
                                       equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind_from_stats(np.mean(x), np.std(x, ddof=1), 4, 52.60 + delta, paper_sample_std, 5,
                                       equal_var=False, alternative="less").pvalue
    v = V.cell_verdict(x, 52.60, delta, published_std=0.182, published_seeds=5, published_ddof=0)
    assert v.test.startswith("Welch") and v.p_equivalence == pytest.approx(max(lower, upper))


def test_one_seed_uses_the_assumed_std_and_says_so():
    v = V.cell_verdict([52.3], 52.6, 1.0, prior_std=0.2)
    # z = (-0.3 + 1) / 0.2 = 3.5 and (-0.3 - 1) / 0.2 = -6.5: p = max(norm.sf(3.5), norm.cdf(-6.5))
    assert v.p_equivalence == pytest.approx(max(stats.norm.sf(3.5), stats.norm.cdf(-6.5)))
    assert v.verdict == "reproduced" and v.assumed_std == 0.2 and v.mark == "✓*"
    assert V.cell_verdict([52.3], 52.6, 1.0) is None       # no prior: nothing can be said


def test_differs_when_the_95_interval_misses_the_band_and_seeds_needed_when_inconclusive():
    far = V.cell_verdict([45.0, 45.4, 44.8], 50.0, 1.0)
    assert far.verdict == "differs" and far.high < -1.0
    wide = V.cell_verdict([55.0, 52.0], 50.0, 1.0)
    assert wide.verdict == "inconclusive"
    # At mean 53.5, std 2.1213: the 95% half-width t(0.975, n-1) * 2.1213 / sqrt(n) drops under
    # 3.5 - 1 = 2.5 first at n = 6 (n = 5: 2.776 * 0.9487 = 2.634; n = 6: 2.571 * 0.8660 = 2.227).
    assert wide.seeds_needed == 6
    for n, outside in ((5, False), (6, True)):
        half = stats.t.ppf(0.975, n - 1) * np.std([55.0, 52.0], ddof=1) / math.sqrt(n)
        assert (half < 2.5) == outside


# ------------------------------------------------------------------ claims and Holm

def test_paired_claim_test_is_scipys_one_sided_ttest_rel():
    a = {0: 9.1, 1: 7.5, 2: 11.0, 3: 8.2, 4: 10.3}      # gap of the new method
    b = {0: 13.0, 1: 10.2, 2: 16.1, 3: 12.0, 4: 15.9}   # gap of the baseline
    t = V.claim_setting(a, b, "lower")
    ref = stats.ttest_rel(list(b.values()), list(a.values()), alternative="greater")
    assert t.paired and t.p == pytest.approx(ref.pvalue) and t.test.startswith("paired t-test")
    assert t.effect == pytest.approx(np.mean(list(b.values())) - np.mean(list(a.values())))


def test_unpaired_claim_falls_back_to_welch():
    a = {0: 51.0, 1: 52.0, 2: 51.5}
    b = {5: 50.0, 6: 50.2, 7: 50.9}
    t = V.claim_setting(a, b, "higher")
    ref = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False, alternative="greater")
    assert not t.paired and t.p == pytest.approx(ref.pvalue) and t.test.startswith("Welch")


def test_holm_on_a_hand_example():
    # p = 0.01, 0.04, 0.03 (m = 3). Sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06,
    # 1 * 0.04 = 0.04 -> running max 0.06. Adjusted, in input order: 0.03, 0.06, 0.06.
    assert V.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_claim_verdicts_hold_fail_and_inconclusive_after_holm():
    def claim(a, b, direction="higher"):
        return V.ClaimVerdict({"id": "x"}, "inconclusive", "", [V.claim_setting(a, b, direction)])

    seeds = range(5)
    holds = claim({s: 60 + s * 0.1 for s in seeds}, {s: 50 + s * 0.1 + (s % 2) * 0.05 for s in seeds})
    fails = claim({s: 40 + s * 0.1 for s in seeds}, {s: 50 + s * 0.1 + (s % 2) * 0.05 for s in seeds})
    unclear = claim({0: 50.0, 1: 53.0, 2: 49.0}, {0: 50.5, 1: 51.0, 2: 50.0})
    V.judge_claims([holds, fails, unclear])
    assert [c.verdict for c in (holds, fails, unclear)] == ["holds", "fails", "inconclusive"]
    assert holds.p_holm == pytest.approx(min(1.0, 3 * holds.p))     # smallest p: times m


# ------------------------------------------------------------------ a constructed table

EPS = 8 / 255
RUN = {"scale": "full", "training": {"epochs": 200}, "threat": {"eps": EPS}, "data_subset": None}


def _records(root, method, seed, natural, pgd, n=10000):
    """Best measured as SGLR's code did (docs/evaluation.md "Protocols"): chosen on the test
    set (best_test), PGD-20 with pgd_attack.py's eps 0.031 and step 0.003."""
    out = []
    for attack, value, params in (("natural", natural, {"kind": "natural", "eps": EPS}),
                                  ("pgd20", pgd, {"kind": "pgd", "steps": 20, "eps": 0.031, "alpha": 0.003})):
        d = root / method / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        rec = {"dataset": "cifar10", "noise": "none", "arch": "resnet18", "method": method, "seed": seed,
               "checkpoint": "best_test", "attack": attack, "n": n, "accuracy": value / 100, "params": params,
               "run_spec": {**RUN, "base_method": method, "method_params": {}}}
        path = d / f"best_test-{attack}.json"
        path.write_text(json.dumps(rec))
        out.append(path)
    return out


def test_a_constructed_table_shows_every_verdict(tmp_path):
    # SGLR Tab. 2 Best: PGD-AT natural 80.7, PGD-20 50.7; +LS natural 82.2, PGD-20 53.7.
    files = []
    pgd_at = {0: (80.6, 45.0), 1: (80.8, 45.2), 2: (80.7, 44.9)}       # natural reproduced; PGD-20 differs
    ls = {0: (84.0, 53.5), 1: (80.0, 53.9)}                             # natural inconclusive; PGD-20 reproduced? wide
    for seed, (nat, pgd) in pgd_at.items():
        files += _records(tmp_path, "pgd-at", seed, nat, pgd)
    for seed, (nat, pgd) in ls.items():
        files += _records(tmp_path, "pgd-at+ls", seed, nat, pgd)
    files += _records(tmp_path / "smoke", "pgd-at+te", 0, 82.4, 55.8, n=100)   # 100 of 10000 test images
    spec = {"name": "t", "kind": "accuracy", "datasets": ["cifar10"], "noise": ["none"], "archs": ["resnet18"],
            "methods": ["pgd-at", "pgd-at+ls", "pgd-at+te"], "seeds": [0, 1, 2], "attacks": ["natural", "pgd20"],
            "checkpoints": ["best_test"], "published": "sglr-tab2",
            "verdicts": {"tolerance": {"accuracy": 1.0, "ece": 0.01}, "prior_std": {"accuracy": None, "ece": None},
                         "alpha": 0.05}}
    md = make_table(files, spec, tmp_path / "t.md")
    cells = pd.read_csv(tmp_path / "t.csv").set_index(["method", "column"])
    assert cells.loc[("pgd-at", "natural"), "verdict"] == "reproduced"
    assert cells.loc[("pgd-at", "pgd20"), "verdict"] == "differs"
    assert cells.loc[("pgd-at+ls", "natural"), "verdict"] == "inconclusive"
    assert cells.loc[("pgd-at+ls", "natural"), "seeds_needed"] > 2
    assert not cells.loc[("pgd-at+te", "natural"), "comparable"]
    # the interval in the CSV is the 95% t interval of the seeds, by scipy
    ci = stats.ttest_1samp([80.6, 80.8, 80.7], 0).confidence_interval(0.95)
    assert cells.loc[("pgd-at", "natural"), "ci95_low"] == pytest.approx(ci.low)
    assert cells.loc[("pgd-at", "natural"), "ci95_high"] == pytest.approx(ci.high)
    assert "✓" in md and "✗" in md and "?" in md and "n/c†" in md
    assert "1 reproduced ✓, 1 differs ✗" in md and "100 of 10000 test images" in md


def test_the_paper_row_shows_what_the_paper_prints_marked_sic(tmp_path):
    # ADR Tab. 1, CIFAR-10 TRADES natural: 82.95 / 82.42, Diff printed -0.53 (consistent: +0.53).
    files = []
    for ckpt, value in (("best_test", 82.95), ("final", 82.42)):   # Best chosen on the test set, as ADR's code
        d = tmp_path / ckpt
        d.mkdir()
        rec = {"dataset": "cifar10", "noise": "none", "arch": "resnet18", "method": "trades", "seed": 0,
               "checkpoint": ckpt, "attack": "natural", "n": 10000, "accuracy": value / 100,
               "params": {"kind": "natural", "eps": EPS}, "run_spec": {**RUN, "base_method": "trades", "method_params": {}}}
        (d / "natural.json").write_text(json.dumps(rec))
        files.append(d / "natural.json")
    spec = {"name": "t", "kind": "accuracy", "datasets": ["cifar10"], "noise": ["none"], "archs": ["resnet18"],
            "methods": ["trades"], "seeds": [0], "attacks": ["natural"], "checkpoints": ["best_test", "final"],
            "published": "adr-tab1"}
    md = make_table(files, spec, tmp_path / "t.md")
    paper = next(line for line in md.splitlines() if "↳ paper" in line)
    assert "-0.53 *sic*" in paper
    delta = next(line for line in md.splitlines() if "↳ Δ" in line)
    assert delta.count("0.00") == 3          # compared against the consistent +0.53


def test_no_spread_gives_finite_p_values_and_a_point_interval():
    t = V.claim_setting({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0}, "lower")     # every paired difference is 1
    assert (t.p, t.p_opposite, t.low, t.high) == (0.0, 1.0, 1.0, 1.0)


def test_verdict_page_tests_each_claim_with_scipy_and_holm_across_the_file(tmp_path):
    from soften.reporting.verdict_page import build

    gaps = {"pgd-at": {0: 13.0, 1: 10.2, 2: 16.1, 3: 12.0, 4: 15.9},
            "pgd-at+sglr": {0: 9.1, 1: 7.5, 2: 11.0, 3: 8.2, 4: 10.3},
            "pgd-at+adr": {0: 12.5, 1: 10.9, 2: 15.0, 3: 12.4, 4: 14.8}}
    rows = [{"experiment": "main", "dataset": "digits", "noise": "symmetric-0.4", "arch": "cnn-wide", "method": m,
             "column": "pgd20", "part": "Diff", "mean": np.mean(list(v.values())), "std": 0.0, "seeds": 5,
             "per_seed": json.dumps(v)} for m, v in gaps.items()]
    pd.DataFrame(rows).to_csv(tmp_path / "main.csv", index=False)
    claim = {"metric": {"column": "pgd20", "part": "Diff"}, "than": "pgd-at", "direction": "lower", "cite": "x"}
    spec = {"results_dir": "results", "scale": "full", "verdicts": {"alpha": 0.05},
            "experiments": [{"name": "main", "title": "t", "kind": "accuracy", "published": None, "seeds": [0, 1, 2, 3, 4],
                             "methods": list(gaps), "checkpoints": ["best", "final"],
                             "claims": [{**claim, "id": "sglr", "method": "pgd-at+sglr"},
                                        {**claim, "id": "adr", "method": "pgd-at+adr"},
                                        {**claim, "id": "off-grid", "method": "trades"}]}]}
    md, record = build([tmp_path / "main.csv"], spec)
    base = list(gaps["pgd-at"].values())
    p = [stats.ttest_rel(base, list(gaps[m].values()), alternative="greater").pvalue for m in ("pgd-at+sglr", "pgd-at+adr")]
    got = {c["claim"]["id"]: c for c in record["claims"]}
    assert got["sglr"]["p"] == pytest.approx(p[0]) and got["adr"]["p"] == pytest.approx(p[1])
    small, large = sorted(p)
    holm = {p[0]: None, p[1]: None}
    holm[small] = 2 * small
    holm[large] = max(2 * small, large)
    assert got["sglr"]["p_holm"] == pytest.approx(min(1, holm[p[0]]))
    assert got["adr"]["p_holm"] == pytest.approx(min(1, holm[p[1]]))
    assert got["sglr"]["verdict"] == "holds" and "paired t-test (one-sided), 5 seeds" in md
    # a claim outside the grid is reported and left out of Holm's family (m = 2 above)
    assert got["off-grid"]["verdict"] == "not testable" and "trades not in the experiment's methods" in md
