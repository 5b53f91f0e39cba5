"""Verdicts: did a table cell reproduce the paper's number, does a paper's claim hold.

Every distribution comes from ``scipy.stats``; docs/evaluation.md states the rules,
their assumptions and their limits. In short:

*Cells.* d = (our mean over seeds) − (published value p), tolerance δ. With ≥ 2 seeds
the uncertainty of d is Student-t over our seeds (``t-test``); where the paper prints
its own ± and seed count (ADR Tab. 7) the two samples are compared by Welch's
unequal-variance t (``Welch``); with one seed a stated prior seed std σ replaces the
sample's and the normal distribution the t (``z, assumed σ``).

- ``reproduced``: equivalence by two one-sided tests (TOST) at α = 5%: both
  H0: d ≤ −δ and H0: d ≥ +δ rejected at 5%, i.e. the 90% interval of d inside [−δ, δ].
- ``differs``: the 95% interval of d does not meet [−δ, δ].
- ``inconclusive`` otherwise, with the seeds that would decide it if the mean and the
  spread stayed as observed.

*Claims.* "method A is higher (lower) than B on metric M in scope S" is tested one-sided
in each setting of S (paired t on per-seed differences where A and B ran the same seeds
of one setting: same split, same noisy labels, same initialisation; Welch otherwise; a
normal test with the prior σ at one seed each). A claim over several settings holds only
if it holds in each (intersection–union: its p-value is the largest). A paper's claims
are one family: Holm's step-down correction. ``holds``: adjusted p < α; ``fails``: the
opposite one-sided test, Holm-adjusted the same way, < α; else ``inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05          # each one-sided test (TOST arms, claims) and the family-wise rate of Holm
LEVEL = 0.95          # the printed interval
MAX_SEEDS = 1000      # beyond this "seeds needed" is reported as not reachable

MARKS = {"reproduced": "✓", "differs": "✗", "inconclusive": "?"}


# ------------------------------------------------------------------ the uncertainty of a difference

@dataclass(frozen=True)
class Estimate:
    """A difference ``d`` with its standard error and the distribution of (d − δ0)/se:
    Student t with ``df`` degrees of freedom, or the normal when ``df`` is None (σ known)."""

    d: float
    se: float
    df: float | None
    test: str

    def dist(self):
        """The frozen scipy distribution of the standardised difference."""
        return stats.norm() if self.df is None else stats.t(self.df)

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        """Two-sided ``level`` interval of d."""
        lo, hi = self.dist().interval(level)
        return float(self.d + lo * self.se), float(self.d + hi * self.se)

    def p_greater(self, bound: float = 0.0) -> float:
        """One-sided p of H0: true d ≤ ``bound``."""
        return float(self.dist().sf((self.d - bound) / self.se)) if self.se > 0 else float(self.d <= bound)

    def p_less(self, bound: float = 0.0) -> float:
        """One-sided p of H0: true d ≥ ``bound``."""
        return float(self.dist().cdf((self.d - bound) / self.se)) if self.se > 0 else float(self.d >= bound)


def one_sample(values: Sequence[float], reference: float) -> Estimate:
    """Mean of ≥ 2 seeds minus ``reference``: Student t, n − 1 degrees of freedom."""
    x = np.asarray(values, dtype=float)
    return Estimate(float(x.mean() - reference), float(stats.sem(x)), len(x) - 1, f"t-test, {len(x)} seeds")


def known_std(values: Sequence[float], reference: float, std: float) -> Estimate:
    """Mean of ``values`` minus ``reference`` when the seed std is taken as known (the prior)."""
    x = np.asarray(values, dtype=float)
    return Estimate(float(x.mean() - reference), std / math.sqrt(len(x)), None,
                    f"z, assumed seed std {std:g} ({len(x)} seed{'s' if len(x) > 1 else ''})")


def welch_df(v1: float, n1: int, v2: float, n2: int) -> float:
    """Welch–Satterthwaite degrees of freedom of two sample variances (a formula, not a distribution)."""
    a, b = v1 / n1, v2 / n2
    return (a + b) ** 2 / (a ** 2 / (n1 - 1) + b ** 2 / (n2 - 1))


def two_sample(values: Sequence[float], mean2: float, std2: float, n2: int, ddof2: int = 1) -> Estimate:
    """Mean of ``values`` minus a printed sample's mean (its std with ``ddof2``, ``n2`` runs): Welch."""
    x = np.asarray(values, dtype=float)
    v1 = float(x.var(ddof=1))
    v2 = std2 ** 2 * (n2 - ddof2) / (n2 - 1)      # the printed std as a sample (ddof 1) variance
    se = math.sqrt(v1 / len(x) + v2 / n2)
    return Estimate(float(x.mean() - mean2), se, welch_df(v1, len(x), v2, n2),
                    f"Welch, {len(x)} seeds vs the paper's {n2}")


# ------------------------------------------------------------------ cells

@dataclass
class CellVerdict:
    """One cell against the paper: its verdict and the numbers behind it (table units)."""

    verdict: str                # reproduced | differs | inconclusive
    test: str
    seeds: int
    mean: float
    published: float
    tolerance: float
    delta: float                # mean − published
    low: float                  # 95% interval of delta
    high: float
    p_equivalence: float        # TOST: the larger of the two one-sided p-values
    seeds_needed: int | None = None     # inconclusive: seeds that would decide it (None: none would)
    assumed_std: float | None = None    # the prior seed std, where one seed stood in for a sample

    @property
    def mark(self) -> str:
        """The compact mark printed beside Δ."""
        return MARKS[self.verdict] + ("*" if self.assumed_std is not None else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the mark."""
        return {**asdict(self), "mark": self.mark}


def decide(est: Estimate, tolerance: float, alpha: float = ALPHA) -> tuple[str, float]:
    """``reproduced`` / ``differs`` / ``inconclusive`` for an estimated difference, and the TOST p."""
    p_tost = max(est.p_greater(-tolerance), est.p_less(tolerance))
    if p_tost < alpha:
        return "reproduced", p_tost
    low, high = est.interval(LEVEL)
    if low > tolerance or high < -tolerance:
        return "differs", p_tost
    return "inconclusive", p_tost


def cell_verdict(values: Sequence[float], published: float, tolerance: float, *,
                 published_std: float | None = None, published_seeds: int | None = None, published_ddof: int = 1,
                 prior_std: float | None = None, alpha: float = ALPHA) -> CellVerdict | None:
    """The verdict of one comparable cell from its per-seed values, or None when nothing
    can be said (one seed and no prior std)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return None

    def estimate(k: int, spread: float | None = None) -> Estimate | None:
        """The estimate with ``k`` seeds at the observed mean and spread."""
        sample = values if k == n else _same_moments(values, k)
        if published_std is not None and published_seeds and published_seeds > 1 and k > 1:
            return two_sample(sample, published, published_std, published_seeds, published_ddof)
        if k > 1:
            return one_sample(sample, published)
        return known_std(sample, published, prior_std) if prior_std else None

    est = estimate(n)
    if est is None:
        return None
    verdict, p = decide(est, tolerance, alpha)
    assumed = prior_std if est.df is None else None
    needed = None
    if verdict == "inconclusive":
        for k in range(n + 1, MAX_SEEDS + 1):
            if assumed is not None:
                more = known_std([est.d + published] * k, published, prior_std)
            else:
                more = estimate(k)
            if more is not None and decide(more, tolerance, alpha)[0] != "inconclusive":
                needed = k
                break
    low, high = est.interval(LEVEL)
    return CellVerdict(verdict, est.test, n, float(np.mean(values)), published, tolerance, est.d, low, high, p,
                       needed, assumed)


def _same_moments(values: Sequence[float], k: int) -> list[float]:
    """``k`` numbers with the mean and sample std of ``values``: what more seeds would give if
    the mean and the spread stayed as observed."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2 or k < 2:
        return [float(x.mean())] * k
    z = np.linspace(-1.0, 1.0, k)
    z = (z - z.mean()) / z.std(ddof=1)
    return list(x.mean() + z * x.std(ddof=1))


# ------------------------------------------------------------------ claims

@dataclass
class SettingTest:
    """A claim in one setting (dataset, noise, arch): effect = A − B, signed so that > 0 is the claim."""

    setting: dict[str, str]
    test: str
    seeds: int
    effect: float
    low: float                  # 95% interval of the effect
    high: float
    p: float                    # one-sided, the claim's direction
    p_opposite: float
    spread: float               # std of the paired differences, or of each method's seeds (Welch)
    paired: bool
    assumed_std: float | None = None


def claim_setting(a: Mapping[int, float], b: Mapping[int, float], direction: str, *, pairable: bool = True,
                  prior_std: float | None = None) -> SettingTest | str:
    """One setting of a claim from per-seed values of method A and method B (seed -> value);
    ``direction``: higher (A > B) or lower (A < B). Returns why not, when it cannot be tested."""
    t = _claim_setting(a, b, direction, pairable, prior_std)
    if isinstance(t, SettingTest) and not all(math.isfinite(v) for v in (t.p, t.p_opposite, t.low, t.high)):
        # No spread at all (every per-seed difference equal): scipy's t is undefined. The
        # effect is then exact: a sure p of 0 for its sign, 1 against, and a point interval.
        t.p, t.p_opposite = float(t.effect <= 0), float(t.effect >= 0)
        t.low = t.high = t.effect
    return t


def _claim_setting(a: Mapping[int, float], b: Mapping[int, float], direction: str, pairable: bool,
                   prior_std: float | None) -> SettingTest | str:
    sign = 1.0 if direction == "higher" else -1.0
    common = sorted(set(a) & set(b))
    if pairable and len(common) >= 2 and set(a) == set(b):
        x = np.array([sign * a[s] for s in common])
        y = np.array([sign * b[s] for s in common])
        res = stats.ttest_rel(x, y, alternative="greater")
        ci = stats.ttest_rel(x, y).confidence_interval(LEVEL)     # two-sided, for the effect's interval
        diff = x - y
        return SettingTest({}, f"paired t-test (one-sided), {len(common)} seeds", len(common), float(diff.mean()),
                           float(ci.low), float(ci.high), float(res.pvalue),
                           float(stats.ttest_rel(x, y, alternative="less").pvalue), float(diff.std(ddof=1)), True)
    xa = np.array([sign * v for v in a.values()])
    xb = np.array([sign * v for v in b.values()])
    if len(xa) >= 2 and len(xb) >= 2:
        res = stats.ttest_ind(xa, xb, equal_var=False, alternative="greater")
        ci = stats.ttest_ind(xa, xb, equal_var=False).confidence_interval(LEVEL)
        spread = math.sqrt((xa.var(ddof=1) + xb.var(ddof=1)) / 2)
        return SettingTest({}, f"Welch t-test (one-sided), {len(xa)} and {len(xb)} seeds", min(len(xa), len(xb)),
                           float(xa.mean() - xb.mean()), float(ci.low), float(ci.high), float(res.pvalue),
                           float(stats.ttest_ind(xa, xb, equal_var=False, alternative="less").pvalue), float(spread),
                           False)
    if prior_std and len(xa) and len(xb):
        est = Estimate(float(xa.mean() - xb.mean()), prior_std * math.sqrt(1 / len(xa) + 1 / len(xb)), None, "")
        low, high = est.interval(LEVEL)
        return SettingTest({}, f"z-test (one-sided), assumed seed std {prior_std:g}", min(len(xa), len(xb)), est.d,
                           low, high, est.p_greater(0.0), est.p_less(0.0), prior_std, False, prior_std)
    if not len(xa) or not len(xb):
        return "no results for " + ("A" if not len(xa) else "B")
    return "one seed per method and no prior seed std (verdicts.prior_std)"


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class ClaimVerdict:
    """One claim of a paper, tested: its settings, the family-adjusted p and the verdict."""

    claim: dict[str, Any]
    verdict: str                         # holds | fails | inconclusive | not testable
    why: str = ""
    settings: list[SettingTest] = field(default_factory=list)
    p: float | None = None               # intersection–union: the largest setting p
    p_holm: float | None = None
    p_opposite_holm: float | None = None
    seeds_needed: int | None = None


def seeds_for_claim(t: SettingTest, alpha: float) -> int | None:
    """Seeds per method that would make the one-sided test reject at ``alpha`` if effect and
    spread stayed as observed (None: the effect is not in the claim's direction)."""
    if t.effect <= 0:
        return None
    for k in range(2, MAX_SEEDS + 1):
        if t.assumed_std is not None:
            p = float(stats.norm.sf(t.effect / (t.assumed_std * math.sqrt(2 / k))))
        else:
            se = t.spread / math.sqrt(k) if t.paired else t.spread * math.sqrt(2 / k)
            df = k - 1 if t.paired else 2 * (k - 1)
            p = float(stats.t.sf(t.effect / se, df)) if se > 0 else 0.0
        if p < alpha:
            return max(k, t.seeds + 1)
    return None


def judge_claims(results: list[ClaimVerdict], alpha: float = ALPHA) -> list[ClaimVerdict]:
    """Holm across the testable claims (in place), then each one's verdict."""
    tested = [c for c in results if c.settings and not c.why]
    for c in tested:
        c.p = max(t.p for t in c.settings)
    adj = holm([c.p for c in tested])
    adj_opp = holm([max(t.p_opposite for t in c.settings) for c in tested])
    for c, p, q in zip(tested, adj, adj_opp):
        c.p_holm, c.p_opposite_holm = p, q
        if p < alpha:
            c.verdict = "holds"
        elif q < alpha:
            c.verdict = "fails"
        else:
            c.verdict = "inconclusive"
            # the strictest Holm step (alpha / m): enough whatever the other claims' p-values
            needs = [seeds_for_claim(t, alpha / max(1, len(tested))) for t in c.settings if t.p >= alpha / len(tested)]
            c.seeds_needed = None if any(n is None for n in needs) else max(needs, default=None)
    return results
