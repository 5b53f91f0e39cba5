"""The verdict stage's page: every table cell's verdict and every claim's test for one
results directory, as ``verdict.md`` (for people) and ``verdict.json`` (for machines).

It reads the tables' ``.csv`` (one row per cell: the verdict the tables stage gave each
comparable cell, and the per-seed values) and the experiments' claims (config
``experiments.<name>.claims``). Claims are tested here, over the per-seed values of the
claim's column and part (soften.reporting.verdicts). A failed reproduction is a result, not an
error: nothing here raises on a verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from soften.reporting import verdicts as V

SCALE_NOTE = "not testable at this scale ({scale}): the runs are too short and too small to say anything about the paper"


def _per_seed(text: Any) -> dict[int, float]:
    if not isinstance(text, str) or not text:
        return {}
    return {int(k): float(v) for k, v in json.loads(text).items()}


def _cells(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The published cells of one table (rows with a paper value), as records."""
    if "published" not in frame.columns:
        return []
    out = []
    for r in frame[frame["published"].notna()].to_dict("records"):
        verdict = r.get("verdict") if isinstance(r.get("verdict"), str) and r.get("verdict") else None
        comparable = bool(r.get("comparable")) if r.get("comparable") == r.get("comparable") else False
        out.append({
            **{k: _str(r.get(k)) for k in ("dataset", "noise", "arch", "method", "column", "part")},
            "seeds": int(r["seeds"]),
            "mean": _num(r.get("mean")), "published": _num(r["published"]),
            "verdict": verdict if comparable and verdict else ("not comparable" if not comparable else "no verdict"),
            "why_not_comparable": r.get("why_not_comparable") if isinstance(r.get("why_not_comparable"), str) else "",
            "test": r.get("test") if isinstance(r.get("test"), str) else "",
            "ci95": [_num(r.get("ci95_low")), _num(r.get("ci95_high"))],
            "p_equivalence": _num(r.get("p_equivalence")), "seeds_needed": _int(r.get("seeds_needed")),
            "assumed_seed_std": _num(r.get("assumed_seed_std")),
        })
    return out


def _str(v: Any) -> str:
    """A CSV field as text: an empty field (noise-gap rows have no noise) reads back as NaN."""
    return "" if v is None or (isinstance(v, float) and v != v) else str(v)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def claims_tested(frames: dict[str, pd.DataFrame], spec: dict[str, Any]) -> list[V.ClaimVerdict]:
    """Every claim of the config, tested and judged (Holm across all of them: one paper per file)."""
    settings = spec.get("verdicts") or {}
    alpha = float(settings.get("alpha", V.ALPHA))
    results = []
    for exp in spec["experiments"]:
        frame = frames.get(exp["name"])
        for claim in exp.get("claims", []):
            claim = {**claim, "experiment": exp["name"]}
            if spec.get("scale", "full") != "full":
                results.append(V.ClaimVerdict(claim, "not testable", SCALE_NOTE.format(scale=spec["scale"])))
                continue
            # A claim outside the experiment's grid (a config derived from a paper file with
            # fewer methods or checkpoints) is reported, not an error: the rest still runs.
            missing = [m for m in (claim["method"], claim["than"]) if m not in exp.get("methods", [m])]
            part = claim["metric"]["part"]
            if missing or (part in ("Best", "Final") and part.lower() not in exp.get("checkpoints", [part.lower()])):
                why = f"{', '.join(missing)} not in the experiment's methods" if missing else f"no {part} checkpoint"
                results.append(V.ClaimVerdict(claim, "not testable", why))
                continue
            if frame is None or frame.empty:
                results.append(V.ClaimVerdict(claim, "not testable", "no table"))
                continue
            unit = "ece" if exp["kind"] == "calibration" else "accuracy"
            prior = (settings.get("prior_std") or {}).get(unit)
            if prior and claim["metric"]["part"] == "Diff":
                prior = prior * 2 ** 0.5     # Best − Final of one run: two accuracies (as tables.py)
            results.append(_test_claim(frame, claim, prior))
    return V.judge_claims(results, alpha)


def _test_claim(frame: pd.DataFrame, claim: dict[str, Any], prior: float | None) -> V.ClaimVerdict:
    metric, scope = claim["metric"], claim.get("scope") or {}
    rows = frame[(frame["column"].astype(str) == metric["column"]) & (frame["part"] == metric["part"])]
    for key, col in (("datasets", "dataset"), ("noise", "noise"), ("archs", "arch")):
        if scope.get(key):
            rows = rows[rows[col].astype(str).isin(scope[key])]
    settings = sorted({(r["dataset"], str(r["noise"]) if r["noise"] == r["noise"] else "", r["arch"])
                       for r in rows.to_dict("records")})
    if not settings:
        return V.ClaimVerdict(claim, "not testable", f"no {metric['column']} {metric['part']} cells in scope")
    tests, why = [], []
    for dataset, noise, arch in settings:
        here = rows[(rows["dataset"] == dataset) & (rows["arch"] == arch)
                    & (rows["noise"].astype(str).where(rows["noise"].notna(), "") == noise)]
        a = _per_seed(next(iter(here[here["method"] == claim["method"]]["per_seed"]), ""))
        b = _per_seed(next(iter(here[here["method"] == claim["than"]]["per_seed"]), ""))
        # Runs of one seed in one setting share the split, the noisy labels (noise_seed) and
        # the initialisation (the seed): paired by seed.
        t = V.claim_setting(a, b, claim["direction"], pairable=True, prior_std=prior)
        where = {"dataset": dataset, "noise": noise, "arch": arch}
        if isinstance(t, str):
            why.append(f"{dataset}/{noise}/{arch}: {t}")
        else:
            t.setting = where
            tests.append(t)
    if why:
        return V.ClaimVerdict(claim, "not testable", "; ".join(why))
    return V.ClaimVerdict(claim, "inconclusive", "", tests)


# ------------------------------------------------------------------ the page

def build(inputs: Sequence[str | Path], spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(verdict.md text, verdict.json record) from the tables' CSVs, one per experiment in
    ``spec['experiments']`` order."""
    frames, cells = {}, {}
    for path, exp in zip(inputs, spec["experiments"]):
        frame = pd.read_csv(path) if exp["kind"] != "sanity" else pd.DataFrame()
        frames[exp["name"]] = frame
        cells[exp["name"]] = _cells(frame) if exp.get("published") else []
    claims = claims_tested(frames, spec)
    record = {"results_dir": spec["results_dir"], "scale": spec.get("scale", "full"),
              "settings": {**{"alpha": V.ALPHA}, **(spec.get("verdicts") or {}),
                           "interval": V.LEVEL, "cell_rule": "reproduced: TOST at alpha (90% interval inside ±δ); "
                           "differs: 95% interval outside ±δ", "claim_rule": "one-sided, Holm across the file's claims"},
              "experiments": [{"name": e["name"], "title": e["title"], "published": e.get("published"),
                               "seeds": e.get("seeds"), "cells": cells[e["name"]]} for e in spec["experiments"]],
              "claims": [_claim_record(c) for c in claims]}
    return _markdown(record), record


def _claim_record(c: V.ClaimVerdict) -> dict[str, Any]:
    return {"claim": c.claim, "verdict": c.verdict, "why": c.why, "p": c.p, "p_holm": c.p_holm,
            "p_opposite_holm": c.p_opposite_holm, "seeds_needed": c.seeds_needed,
            "settings": [vars(t) for t in c.settings]}


def _fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}".replace("-", "−")


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}" if v < 0.001 else f"{v:.4f}"


def claim_line(c: dict[str, Any]) -> str:
    """One claim's verdict in a sentence: the effect, its interval, the test and the p-values."""
    cl = c["claim"]
    what = (f"**{cl['id']}** — {cl['method']} {cl['direction']} than {cl['than']} on "
            f"{cl['metric']['column']} {cl['metric']['part']} ({cl['experiment']}): **{c['verdict']}**")
    if not c["settings"]:
        return f"{what}; {c['why']}. *Source:* {cl['cite'].strip()}"
    parts = []
    for t in c["settings"]:
        where = "/".join(v for v in t["setting"].values() if v)
        parts.append(f"{where}: effect {_fmt(t['effect'])} (95% CI {_fmt(t['low'])} to {_fmt(t['high'])}), "
                     f"{t['test']}, p = {_p(t['p'])}")
    more = f"; seeds needed per method: {c['seeds_needed']}" if c["verdict"] == "inconclusive" and c["seeds_needed"] \
        else ("; no number of seeds at the observed effect" if c["verdict"] == "inconclusive" else "")
    return (f"{what} — " + "; ".join(parts) + f"; Holm-adjusted p = {_p(c['p_holm'])}{more}. *Source:* {cl['cite'].strip()}")


def _markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    tol = s.get("tolerance", {})
    lines = [f"# Verdict: {record['results_dir']}", "",
             f"Scale: {record['scale']}. Cells: reproduced when equivalent to the paper within ±{tol.get('accuracy', 1.0):g} pt "
             f"(±{tol.get('ece', 0.01):g} ECE), two one-sided tests at {s.get('alpha', V.ALPHA):g}; differs when the "
             f"95% interval lies outside; else inconclusive. Claims: one-sided tests over seeds, Holm-corrected "
             f"across this file's claims. How and what it does not mean: docs/evaluation.md.", "", "## Claims", ""]
    if not record["claims"]:
        lines.append("This config states no claims.")
    for c in record["claims"]:
        lines.append("- " + claim_line(c))
    lines += ["", "## Cells", ""]
    for e in record["experiments"]:
        if not e["published"]:
            continue
        counts: dict[str, int] = {}
        for cell in e["cells"]:
            counts[cell["verdict"]] = counts.get(cell["verdict"], 0) + 1
        why = sorted({w for c in e["cells"] for w in c["why_not_comparable"].split("; ") if w})
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no published cell in this grid"
        lines.append(f"- **{e['name']}** ({e['published']}): {summary}" + (f" (not comparable: {'; '.join(why)})" if why else ""))
        for cell in e["cells"]:
            if cell["verdict"] in ("reproduced", "differs", "inconclusive"):
                needed = f", {cell['seeds_needed']} seeds would decide" if cell["seeds_needed"] else ""
                assumed = f", seed std {cell['assumed_seed_std']:g} assumed" if cell["assumed_seed_std"] else ""
                lines.append(f"  - {cell['dataset']}/{cell['arch']}/{cell['method']} {cell['column']} {cell['part']}: "
                             f"{_fmt(cell['mean'])} vs {_fmt(cell['published'])}, 95% CI {_fmt(cell['ci95'][0])} to "
                             f"{_fmt(cell['ci95'][1])} ({cell['test']}{assumed}): {cell['verdict']}{needed}")
    if not any(e["published"] for e in record["experiments"]):
        lines.append("No experiment here names a paper table (published:): no cell to compare.")
    return "\n".join(lines) + "\n"
