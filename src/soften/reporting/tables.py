"""The tables stage: one experiment's results as a paper-style table, the paper beside it.

Rows are the experiment's runs grouped by method (mean ± std over seeds), in
blocks per (dataset, noise, architecture). Columns are what the experiment
measures (``kind``): accuracy under each attack, accuracy on each transfer set,
ECE per calibration input (each with Best / Final / Diff = Best − Final), the
training-minus-test accuracy gap per noise setting, or the sanity checks.

When the experiment names a paper table (``published:``), each block gets a
``↳ paper`` row (the published value, as printed) and a ``↳ Δ`` row
(reproduced − published) under every method the paper reports; a cell whose
setting differs from the paper's (epochs, eps, test images, attack budget,
smoke scale) gets no Δ but a mark saying why. Every comparable cell gets a
verdict mark beside its Δ (soften.reporting.verdicts: ✓ reproduced, ✗ differs, ? inconclusive)
and a summary line counts them.

Outputs: ``<name>.md``, ``<name>.csv`` (one row per cell: reproduced mean,
std, seeds, published value, Δ, comparable, why not, the verdict with its test,
95% interval and seeds needed, and the per-seed values) and ``<name>.tex``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from tabulate import tabulate

from soften.reporting import published as pubs
from soften.reporting import verdicts
from soften.io import save_text

ROW_KEYS = ["dataset", "noise", "arch", "method"]
PART_OF = {"best": "Best", "best_test": "Best(test)", "final": "Final"}
#: The checkpoints each part is made of (Diff = Best − Final, per seed).
CKPTS_OF = {"Best": ("best",), "Best(test)": ("best_test",), "Final": ("final",), "Diff": ("best", "final"),
            "Diff(test)": ("best_test", "final"), "value": ("final",)}
#: The config's ``verdicts`` section when a spec carries none (the schema's defaults):
#: tolerance δ and prior seed std per value kind (accuracy: points, ece), and α.
VERDICT_DEFAULTS = {"tolerance": {"accuracy": 1.0, "ece": 0.01}, "prior_std": {"accuracy": None, "ece": None},
                    "alpha": verdicts.ALPHA}


@dataclass
class Measurement:
    """One number of one run: a table cell is the mean of these over seeds."""

    dataset: str
    noise: str
    arch: str
    method: str
    seed: int
    checkpoint: str            # best, final (noise-gap: final)
    column: str
    value: float               # in table units (% or ECE)
    n: int | None
    measure: dict[str, Any]    # what the column measures as configured, for matching the paper's column
    run_spec: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)   # the attack as run (budget, eps), for comparability


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _recorded_precision(history: str | Path) -> dict[str, Any]:
    """The precision training recorded beside a history.csv (its train_summary.json), if any:
    with ``amp: auto`` the config alone does not say whether the run trained in bf16."""
    try:
        precision = _load_json(Path(history).with_name("train_summary.json")).get("precision")
    except (OSError, ValueError):
        return {}
    return {"precision": precision} if precision else {}


def measurements(inputs: Iterable[str | Path], spec: dict[str, Any]) -> list[Measurement]:
    """The numbers an experiment's table is made of, from its input files."""
    kind = spec["kind"]
    out: list[Measurement] = []
    if kind == "noise-gap":
        for path, run in zip(inputs, spec["runs"]):
            last = pd.read_csv(path).iloc[-1]
            robust = run["spec"]["base_method"].split("+")[0] != "standard"
            split = "robust" if robust else "clean"
            gap = 100 * (last[f"train_{split}_acc"] - last[f"test_{split}_acc"])
            # The noise setting is the column here, not part of the row.
            out.append(Measurement(run["dataset"], "", run["arch"], run["method"], int(run["seed"]), "final",
                                   run["noise"], float(gap), None, {"noise": run["noise"]},
                                   {**run["spec"], **_recorded_precision(path)}))
        return out
    configured = spec.get("attack_configs") or {}
    for path in inputs:
        r = _load_json(Path(path))
        base = dict(dataset=r["dataset"], noise=r["noise"], arch=r["arch"], method=r["method"], seed=int(r["seed"]),
                    checkpoint=r["checkpoint"], run_spec=r.get("run_spec", {}))
        if kind == "accuracy":
            out.append(Measurement(**base, column=r["attack"], value=100 * r["accuracy"], n=r["n"],
                                   measure=configured.get(r["attack"], r["params"]), params=r["params"]))
        elif kind == "transfer":
            source = {"arch": r["source"]["arch"], "method": r["source"]["method"]}
            out.append(Measurement(**base, column=f"{r['source_name']} · {r['attack']}", value=100 * r["accuracy"],
                                   n=r["n"], measure={**configured.get(r["attack"], r["params"]), "source": source},
                                   params=r["params"]))
        elif kind == "calibration":
            for name, res in r["inputs"].items():
                out.append(Measurement(**base, column=name, value=res["ece"], n=r["n"],
                                       measure=configured.get(name, res["params"]), params=res["params"]))
    return out


def column_order(spec: dict[str, Any], found: list[str]) -> list[str]:
    """The table's columns: those the experiment names (attacks, source · attack pairs,
    noise settings) in its order, then any other ``found`` in the results."""
    kind = spec["kind"]
    if kind == "accuracy":
        wanted = spec["attacks"]
    elif kind == "transfer":
        wanted = [f"{s} · {a}" for s in spec["sources"] for a in spec["attacks"]]
    elif kind == "noise-gap":
        wanted = spec["noise"]
    else:
        wanted = []
    return [c for c in wanted if c in found] + [c for c in dict.fromkeys(found) if c not in wanted]


@dataclass
class Cell:
    """One aggregated table cell: mean and std over seeds (in the table's units), how many seeds."""

    mean: float | None
    std: float | None
    seeds: int
    note: str = ""              # e.g. why a Diff is not printed
    values: dict[int, float] = field(default_factory=dict)   # seed -> value: what verdicts test


def _stats(per_seed: dict[int, float], ddof: int) -> Cell:
    per_seed = {s: v for s, v in per_seed.items() if v is not None and math.isfinite(v)}
    if not per_seed:
        return Cell(None, None, 0)
    s = pd.Series(list(per_seed.values()))
    return Cell(float(s.mean()), float(s.std(ddof=ddof)) if len(s) > ddof else None, len(s),
                values=dict(sorted(per_seed.items())))


def aggregate(ms: list[Measurement], parts: list[str], ddof: int) -> dict[tuple, dict[tuple[str, str], Cell]]:
    """(dataset, noise, arch, method) -> (column, part) -> Cell."""
    by_row: dict[tuple, dict[tuple[str, str], dict[str, dict[int, float]]]] = {}
    for m in ms:
        row = by_row.setdefault((m.dataset, m.noise, m.arch, m.method), {})
        row.setdefault((m.column, ""), {}).setdefault(m.checkpoint, {})[m.seed] = m.value
    out: dict[tuple, dict[tuple[str, str], Cell]] = {}
    for key, columns in by_row.items():
        cells = out.setdefault(key, {})
        for (column, _), per_ckpt in columns.items():
            for part in parts:
                ckpts = CKPTS_OF[part]
                if len(ckpts) == 1:
                    cells[(column, part)] = _stats(per_ckpt.get(ckpts[0], {}), ddof)
                    continue
                best, final = per_ckpt.get(ckpts[0], {}), per_ckpt.get(ckpts[1], {})
                paired = sorted(set(best) & set(final))
                cell = _stats({s: best[s] - final[s] for s in paired}, ddof)
                if set(best) != set(final):
                    cell = Cell(None, None, 0, f"seeds differ: best {len(best)}, final {len(final)}")
                cells[(column, part)] = cell
    return out


def parts_of(spec: dict[str, Any]) -> list[str]:
    """Sub-columns per column: Best, Best(test) and/or Final (the experiment's checkpoints), plus
    Diff (and Diff(test)) when a Best and Final are both there."""
    if spec["kind"] == "noise-gap":
        return ["value"]
    ckpts = spec.get("checkpoints", ["best", "final"])
    parts = [PART_OF[c] for c in ("best", "best_test", "final") if c in ckpts]
    if "final" in ckpts:
        parts += [d for d, b in (("Diff", "best"), ("Diff(test)", "best_test")) if b in ckpts]
    return parts


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    if text.startswith("-"):
        text = text[1:] if float(text) == 0 else "−" + text[1:]
    return text


def _fmt_cell(cell: Cell, digits: tuple[int, int]) -> str:
    """``digits``: decimal places of the mean and of the std."""
    if cell.note:
        return f"n/a ({cell.note})"
    if cell.mean is None:
        return "n/a"
    std = f" ± {_fmt(cell.std, digits[1])}" if cell.std is not None and cell.seeds > 1 else ""
    return _fmt(cell.mean, digits[0]) + std


@dataclass
class Comparison:
    """A cell beside the paper's: the published value, reproduction minus paper, and why they are not
    comparable (if so)."""

    published: pubs.Published
    delta: float | None
    why_not: list[str]
    verdict: verdicts.CellVerdict | None = None   # comparable cells: reproduced / differs / inconclusive
    printed: str | None = None     # what the paper prints where it contradicts itself (compared: the consistent value)

    def paper_text(self) -> str:
        """The '↳ paper' cell: the value as printed, marked *sic* where the consistent one is compared."""
        return f"{self.printed} *sic*" if self.printed is not None else self.published.text


def make_table(inputs: Iterable[str | Path], spec: dict[str, Any], out_md: str | Path) -> str:
    """Write ``<name>.md`` (returned), ``.csv`` and ``.tex`` for one experiment."""
    inputs = [Path(p) for p in inputs]
    out_md = Path(out_md)
    if spec["kind"] == "sanity":
        md, frame = sanity_table(inputs, spec)
        save_text(frame.to_csv(index=False), out_md.with_suffix(".csv"))
        rows = [[f"{v:.2f}" if isinstance(v, float) else v for v in row] for row in frame.itertuples(index=False)]
        save_text(_latex_table(list(frame.columns), rows, spec.get("title") or spec["name"]), out_md.with_suffix(".tex"))
        save_text(md, out_md)
        return md
    table = pubs.sources().get(spec.get("published") or "", None)
    ddof = int(table.get("std_ddof", 1)) if table else 1
    value_kind = "ece" if spec["kind"] == "calibration" else "percent"
    ms = measurements(inputs, spec)
    if not ms:
        raise ValueError(f"experiment {spec['name']!r}: no results among the {len(inputs)} inputs")
    parts = parts_of(spec)
    cells = aggregate(ms, parts, ddof)
    columns = column_order(spec, [m.column for m in ms])
    info = _row_info(ms)
    param_cols = _param_columns(spec)
    rows = _ordered_rows(spec, cells)
    comparisons: dict[tuple, dict[tuple[str, str], Comparison]] = {}
    settings = verdict_settings(spec, value_kind)
    if table:
        for key in rows:
            comparisons[key] = _compare(table, key, info[key], cells[key], columns, parts, ms, settings)

    records, blocks = [], []
    block_key = (lambda k: (k[0], k[2])) if spec["kind"] == "noise-gap" else (lambda k: (k[0], k[1], k[2]))
    for bkey in dict.fromkeys(block_key(k) for k in rows):
        block_rows = [k for k in rows if block_key(k) == bkey]
        header = ["method", *param_cols, *[f"{c} {p}" if p != "value" else c for c in columns for p in parts], "seeds"]
        lines = []
        for key in block_rows:
            params = [_param_value(info[key]["method_params"], pc) for pc in param_cols]
            comp = comparisons.get(key, {})
            default = 3 if value_kind == "ece" else 2
            digits = {cp: (pubs.digits(comp[cp].published.text), pubs.digits(comp[cp].published.text, 1))
                      if cp in comp else (default, default) for cp in cells[key]}
            values = [_fmt_cell(cells[key].get((c, p), Cell(None, None, 0)), digits.get((c, p), (default, default)))
                      for c in columns for p in parts]
            seeds = max((cell.seeds for cell in cells[key].values()), default=0)
            lines.append([key[3], *params, *values, str(seeds)])
            if comp:
                lines.append(["↳ paper", *[""] * len(param_cols),
                              *[comp[(c, p)].paper_text() if (c, p) in comp else "" for c in columns for p in parts], ""])
                lines.append(["↳ Δ", *[""] * len(param_cols),
                              *[_delta_text(comp.get((c, p)), digits.get((c, p), (2, 2))[0]) for c in columns for p in parts], ""])
            for c in columns:
                for p in parts:
                    cell = cells[key].get((c, p), Cell(None, None, 0))
                    cmp_ = comp.get((c, p))
                    records.append({
                        "experiment": spec["name"], "dataset": key[0], "noise": key[1], "arch": key[2], "method": key[3],
                        **{pc: _param_value(info[key]["method_params"], pc) for pc in param_cols},
                        "column": c, "part": p, "mean": cell.mean, "std": cell.std, "seeds": cell.seeds,
                        "published": cmp_.published.value if cmp_ else None,
                        "published_as_printed": cmp_.paper_text() if cmp_ else "",
                        "published_std": cmp_.published.std if cmp_ else None,
                        "delta": cmp_.delta if cmp_ else None,
                        "comparable": (not cmp_.why_not) if cmp_ else None,
                        "why_not_comparable": "; ".join(cmp_.why_not) if cmp_ else "",
                        **_verdict_columns(cmp_.verdict if cmp_ else None),
                        "per_seed": json.dumps(cell.values, sort_keys=True),
                    })
        title = f"{bkey[0]} · {bkey[1]}" if spec["kind"] == "noise-gap" else f"{bkey[0]} · noise {bkey[1]} · {bkey[2]}"
        blocks.append((title, header, lines))

    md = _markdown(spec, table, blocks, comparisons, value_kind, ddof, settings)
    save_text(pd.DataFrame(records).to_csv(index=False), out_md.with_suffix(".csv"))
    save_text(_latex(spec, blocks), out_md.with_suffix(".tex"))
    save_text(md, out_md)
    return md


def _row_info(ms: list[Measurement]) -> dict[tuple, dict[str, Any]]:
    info: dict[tuple, dict[str, Any]] = {}
    for m in ms:
        key = (m.dataset, m.noise, m.arch, m.method)
        spec = m.run_spec or {}
        info.setdefault(key, {"base_method": spec.get("base_method", m.method),
                              "method_params": spec.get("method_params", {}), "run_spec": spec})
    return info


def _param_columns(spec: dict[str, Any]) -> list[str]:
    """'component.key' for every hyperparameter the experiment's variants set."""
    cols = []
    for params in (spec.get("variants") or {}).values():
        for comp, values in params.items():
            cols += [f"{comp}.{k}" for k in values]
    return list(dict.fromkeys(cols))


def _param_value(method_params: dict[str, Any], column: str) -> str:
    comp, _, key = column.partition(".")
    value = method_params.get(comp, {}).get(key)
    return "" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _ordered_rows(spec: dict[str, Any], cells: dict[tuple, Any]) -> list[tuple]:
    order = {m: i for i, m in enumerate(spec.get("methods", []))}
    ds = {d: i for i, d in enumerate(spec.get("datasets", []))}
    nz = {n: i for i, n in enumerate(spec.get("noise", []))}
    ar = {a: i for i, a in enumerate(spec.get("archs", []))}
    if spec["kind"] == "noise-gap":
        # One row per method (the noise settings are columns).
        return sorted(cells, key=lambda k: (ds.get(k[0], 99), ar.get(k[2], 99), order.get(k[3], 99), k))
    return sorted(cells, key=lambda k: (ds.get(k[0], 99), nz.get(k[1], 99), ar.get(k[2], 99), order.get(k[3], 99), k))


def verdict_settings(spec: dict[str, Any], value_kind: str) -> dict[str, Any]:
    """δ, prior seed std and α for this table's values (``value_kind``: percent or ece)."""
    section = {**VERDICT_DEFAULTS, **(spec.get("verdicts") or {})}
    unit = "ece" if value_kind == "ece" else "accuracy"
    return {"tolerance": float(section["tolerance"][unit]), "prior_std": section["prior_std"].get(unit),
            "alpha": float(section["alpha"])}


def _verdict_columns(v: verdicts.CellVerdict | None) -> dict[str, Any]:
    return {"verdict": v.verdict if v else "", "test": v.test if v else "", "ci95_low": v.low + v.published if v else None,
            "ci95_high": v.high + v.published if v else None, "p_equivalence": v.p_equivalence if v else None,
            "seeds_needed": v.seeds_needed if v else None, "assumed_seed_std": v.assumed_std if v else None}


def _cell_verdict(cell: Cell, published: pubs.Published, part: str, table: dict[str, Any],
                  settings: dict[str, Any]) -> verdicts.CellVerdict | None:
    """A comparable cell's verdict. A one-seed Diff is the difference of two accuracies of one
    run: its assumed std is the prior's times √2 (Best and Final taken as independent)."""
    prior = settings["prior_std"]
    if prior is not None and part in ("Diff", "Diff(test)"):
        prior = prior * math.sqrt(2)
    seeds = table["setting"].get("seeds")
    return verdicts.cell_verdict(list(cell.values.values()), published.value, settings["tolerance"],
                                 published_std=published.std, published_seeds=seeds,
                                 published_ddof=int(table.get("std_ddof", 1)), prior_std=prior,
                                 alpha=settings["alpha"])


def _compare(table: dict[str, Any], key: tuple, info: dict[str, Any], cells: dict[tuple[str, str], Cell],
             columns: list[str], parts: list[str], ms: list[Measurement],
             settings: dict[str, Any] | None = None) -> dict[tuple[str, str], Comparison]:
    settings = settings or verdict_settings({}, "percent")
    row = {"dataset": key[0], "noise": key[1], "arch": key[2], "method": key[3], "base_method": info["base_method"],
           "method_params": info["method_params"]}
    pub_row = pubs.match_row(table, row)
    if pub_row is None:
        return {}
    out = {}
    for c in columns:
        sample = [m for m in ms if (m.dataset, m.noise, m.arch, m.method) == key and m.column == c]
        if not sample:
            continue
        for p in parts:
            ckpts = CKPTS_OF[p]
            ckpt = ckpts[0] if len(ckpts) == 1 else None
            single = table["parts"] == ["value"]  # one value per cell, pinned to a checkpoint
            if single and ckpt is None:
                continue
            pub_col = pubs.match_column(table, sample[0].measure, ckpt if single else None)
            if pub_col is None:
                continue
            published = pubs.published_cell(table, pub_row, pub_col, p)
            if published is None:
                continue
            relevant = [m for m in sample if p == "value" or m.checkpoint in ckpts] or sample
            why = sorted({w for m in relevant for w in pubs.not_comparable(
                table, dataset=key[0], run_spec=m.run_spec, n=m.n, params=m.params or None, configured=m.measure,
                checkpoint=m.checkpoint if p != "value" else None)})
            paper_seeds = table["setting"].get("seeds")
            cell = cells[(c, p)]
            # Welch compares any ≥ 2 seeds with the paper's sample; one seed has no spread to compare.
            if paper_seeds and cell.seeds < min(2, paper_seeds):
                why.append(f"{cell.seeds} of {paper_seeds} seeds")
            delta = None if why or cell.mean is None else cell.mean - published.value
            verdict = None if delta is None else _cell_verdict(cell, published, p, table, settings)
            out[(c, p)] = Comparison(published, delta, why, verdict, pubs.printed_cell(table, pub_row, pub_col, p))
    return out


def _delta_text(cmp_: Comparison | None, digits: int) -> str:
    if cmp_ is None:
        return ""
    if cmp_.why_not:
        return "n/c†"
    if cmp_.delta is None:
        return "n/a"
    text = _fmt(cmp_.delta, digits)
    text = ("+" + text) if float(text.replace("−", "-")) > 0 else text
    return f"{text} {cmp_.verdict.mark}" if cmp_.verdict else text


def _markdown(spec, table, blocks, comparisons, value_kind, ddof, settings) -> str:
    parts = [f"## {spec.get('title') or spec['name']}\n"]
    for title, header, lines in blocks:
        parts.append(f"### {title}\n")
        parts.append(tabulate(lines, headers=header, tablefmt="github", stralign="right", disable_numparse=True) + "\n")
    notes = [NOTES[spec["kind"]], *_protocol_legend(spec)]
    std = "population std (ddof=0), as the paper's" if ddof == 0 else "sample std (ddof=1)"
    notes.append(f"Mean ± {std} over seeds; 'seeds' counts them (a value without ± is one seed).")
    if table:
        all_cmp = [c for row in comparisons.values() for c in row.values()]
        reasons = sorted({w for c in all_cmp for w in c.why_not})
        notes.append(f"*Published:* {table['paper']}, {table['title']}. '↳ paper' is the value as printed "
                     f"(*sic*: as printed where the paper contradicts itself; the consistent value is compared); "
                     f"'↳ Δ' is reproduced − published.")
        if table.get("note"):
            notes.append(f"*Paper note:* {' '.join(table['note'].split())}")
        if pubs.protocol(table).get("note"):
            notes.append(f"*The authors' code:* {' '.join(pubs.protocol(table)['note'].split())}")
        shown = {(k[0], k[2], k[3]) for k in comparisons if comparisons[k]}
        for pub in table["rows"]:
            if pub.get("sic") and (pub["dataset"], pub["arch"], pub["method"]) in shown:
                notes.append(f"*(sic)* {pub['method']}, {pub['dataset']}: {pub['sic']}.")
        notes.append(summary_line(all_cmp, value_kind, settings))
        if reasons:
            notes.append("† not comparable with the paper (no Δ, no verdict): " + "; ".join(reasons) + ".")
        if not all_cmp:
            notes.append("The paper reports none of these rows in this setting.")
    if spec.get("note"):
        notes.append(" ".join(spec["note"].split()))
    return "\n".join(parts) + "\n" + "\n\n".join(notes) + "\n"


def summary_line(all_cmp: list[Comparison], value_kind: str, settings: dict[str, Any]) -> str:
    """The verdicts of a table's published cells, counted, with the marks' legend."""
    counts = {k: [c for c in all_cmp if c.verdict and c.verdict.verdict == k] for k in verdicts.MARKS}
    no_prior = [c for c in all_cmp if not c.why_not and c.delta is not None and c.verdict is None]
    not_comparable = [c for c in all_cmp if c.why_not or c.delta is None]
    unit = " pt" if value_kind == "percent" else ""
    needed = [c.verdict.seeds_needed for c in counts["inconclusive"]]
    reach = [n for n in needed if n is not None]
    inconclusive = f"{len(counts['inconclusive'])} inconclusive ?"
    if reach:
        inconclusive += f" (decided at {min(reach)}–{max(reach)} seeds at the observed spread" + (
            f"; {len(needed) - len(reach)} by no number of seeds)" if len(reach) < len(needed) else ")")
    if no_prior:
        inconclusive += f", {len(no_prior)} without verdict (one seed, no prior seed std: verdicts.prior_std)"
    why = sorted({w for c in not_comparable for w in c.why_not})
    assumed = any(c.verdict and c.verdict.assumed_std is not None for c in all_cmp)
    return (f"**Verdicts against the paper (tolerance ±{settings['tolerance']:g}{unit}): "
            f"{len(counts['reproduced'])} reproduced ✓, {len(counts['differs'])} differs ✗, {inconclusive}, "
            f"{len(not_comparable)} not comparable†"
            + (f" ({'; '.join(why)})" if why else "") + "** of "
            f"{len(all_cmp)} published cells. ✓: equivalent within the tolerance (two one-sided tests at "
            f"{settings['alpha']:g}); ✗: the 95% interval lies outside it; ?: neither"
            + ("; *: one seed, the seed std assumed (verdicts.prior_std)" if assumed else "")
            + ". Intervals, tests and seeds needed per cell: the .csv; how: docs/evaluation.md.")


def _protocol_legend(spec: dict[str, Any]) -> list[str]:
    """What 'Best(test)' and each non-default attack protocol among the columns mean."""
    out = []
    if "best_test" in spec.get("checkpoints", []):
        out.append("Best = Best (val): chosen on the held-out validation split (soften's rule). Best(test) = "
                   "Best (test, as the authors' code): the epoch with the highest PGD-10 accuracy on the whole test "
                   "set; Diff(test) = Best(test) − Final.")
    configs = spec.get("attack_configs") or {}
    for name, params in ((n, configs[n]) for n in (spec.get("attacks") or configs) if n in configs):
        if params.get("version") == "torchattacks-3.3":
            out.append(f"'{name}' = AutoAttack as ADR's code (robust_eval.py: torchattacks 3.3.0's standard "
                       "version: 10 iterations, n_classes − 1 targets); a plain 'autoattack' column is AA standard "
                       "(the reference package).")
        elif params.get("kind") == "pgd" and ("eps" in params or "alpha" in params):
            eps, alpha = params.get("eps"), params.get("alpha")
            out.append(f"'{name}' = PGD-{params.get('steps', 20)} with"
                       + (f" eps {eps:.4g}" if eps is not None else "") + (f", step {alpha:.4g}" if alpha else "")
                       + " (as the authors' script).")
    return out


NOTES = {
    "accuracy": ("Accuracy (%) on the test split. Best = the checkpoint with the highest validation robust accuracy "
                 "(validation clean accuracy for `standard`); Final = the last epoch; Diff = Best − Final, per seed."),
    "transfer": ("Black-box transfer: accuracy (%) of each target checkpoint on adversarial test examples crafted "
                 "once on the source model (column '<source> · <attack>'). Diff = Best − Final."),
    "calibration": "Expected calibration error (lower is better) on clean and attacked test inputs. Diff = Best − Final.",
    "noise-gap": ("Training accuracy (against the noisy training labels) minus test accuracy (%), at the last epoch, "
                  "from the per-epoch monitor: clean accuracy for standard training, PGD accuracy for adversarial "
                  "methods. Columns are the label-noise settings."),
}


def _latex(spec: dict[str, Any], blocks) -> str:
    name = spec.get("title") or spec["name"]
    return "\n".join(_latex_table(header, lines, f"{name} — {title}") for title, header, lines in blocks)


_NUMBER = re.compile(r"^\s*([-+−]?\d[\d.,]*\s*(±\s*\d[\d.,]*)?(\s*[✓✗?]\*?|\s*\*sic\*)?|n/a|n/c†?)?\s*$")
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "±": r"$\pm$", "−": r"$-$", "↳": r"$\hookrightarrow$", "Δ": r"$\Delta$", "†": r"\dag{}",
                "✓": r"$\surd$", "✗": r"$\times$"}


def _tex(text: Any) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex_table(header: list[str], lines: list[list[Any]], caption: str) -> str:
    """One booktabs table (needs ``\\usepackage{booktabs}``): caption above, columns of
    numbers right-aligned, and "ATTACK Best/Final/Diff" columns grouped under one
    ATTACK heading, as the papers print them."""
    groups: list[tuple[str, list[int]]] = []
    for i, h in enumerate(header):
        label, _, part = str(h).rpartition(" ")
        label = label if part in ("Best", "Final", "Diff", "Best(test)", "Diff(test)") and i > 0 else ""
        if label and groups and groups[-1][0] == label:
            groups[-1][1].append(i)
        else:
            groups.append((label, [i]))
    align = "".join("r" if i and all(_NUMBER.match(str(row[i])) for row in lines) else "l" for i in range(len(header)))
    head = []
    if any(label for label, _ in groups):
        head.append(" & ".join(f"\\multicolumn{{{len(cols)}}}{{c}}{{{_tex(label)}}}" if label else " & ".join([""] * len(cols))
                               for label, cols in groups) + " \\\\")
        head.append(" ".join(f"\\cmidrule(lr){{{cols[0] + 1}-{cols[-1] + 1}}}" for label, cols in groups if label))
        header = [str(h).rpartition(" ")[2] if any(label and i in cols for label, cols in groups) else h
                  for i, h in enumerate(header)]
    head.append(" & ".join(_tex(h) for h in header) + " \\\\")
    body = [" & ".join(_tex(c) for c in row) + " \\\\" for row in lines]
    return "\n".join(["\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{_tex(caption)}}}",
                      f"\\begin{{tabular}}{{{align}}}", "\\toprule", *head, "\\midrule", *body, "\\bottomrule",
                      "\\end{tabular}", "\\end{table}", ""])


def sanity_table(inputs: list[Path], spec: dict[str, Any]) -> tuple[str, pd.DataFrame]:
    """The sanity experiment's table (Markdown and frame): per checkpoint, n, clean and
    eps = 1 accuracy (%), and pass/FAIL per check."""
    rows = []
    for f in inputs:
        r = _load_json(f)
        row = {k: r[k] for k in ("noise", "arch", "method", "seed", "checkpoint")} | {
            "n": r["n"], "clean": 100 * r["clean_accuracy"], "unbounded": 100 * r["eps_sweep"][-1]["accuracy"]}
        row |= {name: ("pass" if c["passed"] else "FAIL") for name, c in r["checks"].items()}
        row["all"] = "pass" if r["passed"] else "FAIL"
        rows.append(row)
    frame = pd.DataFrame(rows)
    md = (f"## {spec.get('title') or spec['name']}\n\n"
          + tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".2f")
          + "\n\n'clean' and 'unbounded' are accuracies (%) without attack and under PGD with eps = 1 "
            "(ADR App. E: a model that is not masking gradients reaches 0 there).\n")
    if spec.get("note"):
        md += "\n" + " ".join(spec["note"].split()) + "\n"
    return md, frame
