"""The tables stage: gather evaluation JSON into a tidy CSV and paper-style tables.

Tidy CSV (``runs.csv``): one row per run x checkpoint x attack.
Paper-style table (``main.{md,csv,tex}``): one block per (dataset, noise, arch);
rows = method; for each attack, Best / Final / Diff (Best - Final) accuracy in %,
as mean ± std over seeds (sample std, ddof=1; '±' omitted for a single seed).

When such results are among the inputs, also:

- ``transfer.{md,csv}`` (SGLR Tab. B.3): target accuracy (%) on each source's
  transfer set, columns '<source> · <attack> Best/Final/Diff';
- ``calibration.{md,csv}`` (SGLR Tab. B.1): ECE per input type, Best/Final/Diff;
- ``sanity.{md,csv}`` (ADR App. E): each gradient-masking check per checkpoint.

Every result JSON has a ``record`` field (evaluation, transfer, calibration,
sanity; absent means evaluation), so inputs can be given in any mix.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml
from tabulate import tabulate

from soften.io import save_text

KEYS = ["dataset", "noise", "arch", "method", "seed"]


RECORD_GLOBS = {"evaluation": "eval/*.json", "transfer": "transfer/*/*.json",
                "calibration": "calibration/*.json", "sanity": "sanity/*.json"}


def read_records(paths: Iterable[str | Path]) -> dict[str, list[tuple[Path, dict]]]:
    """Result JSON by record type; directories are searched for every type."""
    out: dict[str, list[tuple[Path, dict]]] = {k: [] for k in RECORD_GLOBS}
    for p in paths:
        p = Path(p)
        files = sorted({f for g in RECORD_GLOBS.values() for f in p.rglob(g)}) if p.is_dir() else [p]
        for f in files:
            r = json.loads(f.read_text())
            kind = r.get("record", "evaluation")
            if kind not in out:
                raise ValueError(f"{f}: unknown record type {kind!r}")
            out[kind].append((f, r))
    return out


def collect(paths: Iterable[str | Path], records: dict[str, list[tuple[Path, dict]]] | None = None) -> pd.DataFrame:
    rows = []
    for f, r in (records if records is not None else read_records(paths))["evaluation"]:
        rows.append({k: r[k] for k in KEYS} | {
            "checkpoint": r["checkpoint"], "checkpoint_epoch": r["checkpoint_epoch"], "attack": r["attack"],
            "n": r["n"], "correct": r["correct"], "accuracy": r["accuracy"], "seconds": r["seconds"],
            "file": str(f),
        })
    if not rows:
        raise ValueError("no evaluation results found")
    return pd.DataFrame(rows).sort_values(KEYS + ["checkpoint", "attack"]).reset_index(drop=True)


def _fmt(values: pd.Series, scale: float = 100, digits: int = 2) -> str:
    values = values.dropna() * scale
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def summary(df: pd.DataFrame, method_order: list[str] | None = None, attack_order: list[str] | None = None,
            *, value: str = "accuracy", scale: float = 100, digits: int = 2) -> pd.DataFrame:
    """Wide table: index (dataset, noise, arch, method), columns '<attack> Best/Final/Diff'."""
    def fmt(v: pd.Series) -> str:
        return _fmt(v, scale, digits)

    wide = df.pivot_table(index=KEYS, columns=["attack", "checkpoint"], values=value)
    attacks = attack_order or sorted(df["attack"].unique())
    out = {}
    for attack in attacks:
        if attack not in wide.columns.get_level_values(0):
            continue
        best = wide[attack].get("best")
        final = wide[attack].get("final")
        groups = wide.groupby(level=["dataset", "noise", "arch", "method"])
        out[f"{attack} Best"] = groups.apply(lambda g: fmt(g[(attack, "best")])) if best is not None else "n/a"
        out[f"{attack} Final"] = groups.apply(lambda g: fmt(g[(attack, "final")])) if final is not None else "n/a"
        if best is not None and final is not None:
            out[f"{attack} Diff"] = groups.apply(lambda g: fmt(g[(attack, "best")] - g[(attack, "final")]))
    table = pd.DataFrame(out)
    seeds = df.groupby(["dataset", "noise", "arch", "method"])["seed"].nunique().rename("seeds")
    table = table.join(seeds)
    if method_order:
        rank = {m: i for i, m in enumerate(method_order)}
        table = table.sort_index(level="method", key=lambda idx: idx.map(lambda m: rank.get(m, len(rank))), sort_remaining=False)
        table = table.sort_index(level=["dataset", "noise", "arch"], sort_remaining=False)
    return table


ACCURACY_NOTE = ("Accuracy (%) on the test split, mean ± std over seeds. Best = checkpoint with the highest "
                 "validation robust accuracy (validation clean accuracy for `standard`); Final = last epoch; Diff = Best − Final. A value without ± comes "
                 "from a single seed (e.g. an attack configured for some seeds only).\n")


def paper_numbers() -> dict:
    text = importlib.resources.files("soften").joinpath("reference/paper_numbers.yaml").read_text()
    return yaml.safe_load(text)


def published(dataset: str, noise: str, arch: str, columns: list[str]) -> pd.DataFrame:
    """The papers' numbers for one setting, in the columns of our table ('n/a' where not reported)."""
    ref = paper_numbers()
    rows = []
    for r in ref["rows"]:
        if (r["dataset"], r["noise"], r["arch"]) != (dataset, noise, arch):
            continue
        row = {"method": r["method"]}
        for col in columns:
            attack, _, part = col.rpartition(" ")
            values = r.get(attack)
            row[col] = f"{values[('Best', 'Final', 'Diff').index(part)]:.2f}" if values and part in ("Best", "Final", "Diff") else "n/a"
        row["source"] = ref["sources"][r["source"]]
        rows.append(row)
    return pd.DataFrame(rows)


def render_markdown(table: pd.DataFrame, note: str = ACCURACY_NOTE, *, published_numbers: bool = True) -> str:
    parts = []
    for (dataset, noise, arch), block in table.groupby(level=["dataset", "noise", "arch"], sort=False):
        parts.append(f"### {dataset} · noise {noise} · {arch}\n")
        body = block.reset_index(level=["dataset", "noise", "arch"], drop=True)
        parts.append(tabulate(body, headers="keys", tablefmt="github", stralign="right", disable_numparse=True) + "\n")
        columns = [c for c in body.columns if c != "seeds"]
        if not published_numbers:
            continue
        paper = published(dataset, noise, arch, columns)
        if paper.empty:
            parts.append("*Published numbers:* none for this setting (the papers report CIFAR-10/100 "
                         "and TinyImageNet-200 at eps = 8/255).\n")
        else:
            parts.append("*Published numbers* (as printed in the papers; our runs above):\n")
            parts.append(tabulate(paper, headers="keys", tablefmt="github", stralign="right",
                                  disable_numparse=True, showindex=False) + "\n")
    parts.append(note)
    return "\n".join(parts)


def render_latex(table: pd.DataFrame) -> str:
    return tabulate(table.reset_index(), headers="keys", tablefmt="latex_booktabs", showindex=False, disable_numparse=True) + "\n"


def transfer_frame(records: list[tuple[Path, dict]]) -> pd.DataFrame:
    rows = [{k: r[k] for k in KEYS} | {"checkpoint": r["checkpoint"], "source": r["source_name"], "transfer_attack": r["attack"],
                                       "attack": f"{r['source_name']} · {r['attack']}", "n": r["n"], "correct": r["correct"],
                                       "accuracy": r["accuracy"], "source_accuracy": r["source_accuracy"], "file": str(f)}
            for f, r in records]
    return pd.DataFrame(rows).sort_values(KEYS + ["checkpoint", "attack"]).reset_index(drop=True)


def calibration_frame(records: list[tuple[Path, dict]]) -> pd.DataFrame:
    rows = [{k: r[k] for k in KEYS} | {"checkpoint": r["checkpoint"], "attack": name, "n": r["n"], "n_bins": r["n_bins"],
                                       "ece": v["ece"], "accuracy": v["accuracy"], "mean_confidence": v["mean_confidence"],
                                       "file": str(f)}
            for f, r in records for name, v in r["inputs"].items()]
    return pd.DataFrame(rows).sort_values(KEYS + ["checkpoint", "attack"]).reset_index(drop=True)


def sanity_frame(records: list[tuple[Path, dict]]) -> pd.DataFrame:
    rows = []
    for f, r in records:
        row = {k: r[k] for k in KEYS} | {"checkpoint": r["checkpoint"], "n": r["n"], "clean": r["clean_accuracy"],
                                         "unbounded": r["eps_sweep"][-1]["accuracy"]}
        row |= {name: ("pass" if c["passed"] else "FAIL") for name, c in r["checks"].items()}
        row["all"] = "pass" if r["passed"] else "FAIL"
        rows.append(row)
    return pd.DataFrame(rows).sort_values(KEYS + ["checkpoint"]).reset_index(drop=True)


TRANSFER_NOTE = ("Black-box transfer: accuracy (%) of each target checkpoint on adversarial test examples crafted "
                 "once on the source model (column '<source> · <attack>'), mean ± std over seeds. Diff = Best − Final.\n")
CALIBRATION_NOTE = ("Expected calibration error (lower is better) on clean and attacked test inputs, mean ± std over "
                    "seeds. Diff = Best − Final.\n")


def _first_seen(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def make_tables(inputs: Iterable[str | Path], out_dir: str | Path, *, method_order=None, attack_order=None,
                transfer_order=None, calibration_order=None) -> str:
    """Write main.{md,csv,tex} and runs.csv, plus transfer/calibration/sanity tables
    when such results are among ``inputs``. Returns the main table's Markdown.

    ``transfer_order``: transfer attack names in column order (sources keep their
    first-seen order); ``calibration_order``: input types in column order."""
    out_dir = Path(out_dir)
    inputs = list(inputs)
    records = read_records(inputs)
    if records["transfer"]:
        tf = transfer_frame(records["transfer"])
        attacks = transfer_order or sorted(tf["transfer_attack"].unique())
        order = [f"{src} · {a}" for src in _first_seen(r["source_name"] for _, r in records["transfer"]) for a in attacks]
        table = summary(tf, method_order, order)
        save_text(table.reset_index().to_csv(index=False), out_dir / "transfer.csv")
        save_text(render_markdown(table, TRANSFER_NOTE, published_numbers=False), out_dir / "transfer.md")
    if records["calibration"]:
        cf = calibration_frame(records["calibration"])
        order = calibration_order or _first_seen(name for _, r in records["calibration"] for name in r["inputs"])
        table = summary(cf, method_order, order, value="ece", scale=1, digits=3)
        save_text(table.reset_index().to_csv(index=False), out_dir / "calibration.csv")
        save_text(render_markdown(table, CALIBRATION_NOTE, published_numbers=False), out_dir / "calibration.md")
    if records["sanity"]:
        sf = sanity_frame(records["sanity"])
        save_text(sf.to_csv(index=False), out_dir / "sanity.csv")
        md = tabulate(sf.drop(columns=["dataset"]), headers="keys", tablefmt="github", showindex=False, floatfmt=".3f")
        save_text("### Gradient-masking sanity checks (ADR App. E)\n\n" + md + "\n\n'clean' and 'unbounded' are "
                  "accuracies without attack and under PGD with eps = 1.\n", out_dir / "sanity.md")
    df = collect(inputs, records)
    table = summary(df, method_order, attack_order)
    save_text(df.to_csv(index=False), out_dir / "runs.csv")
    save_text(table.reset_index().to_csv(index=False), out_dir / "main.csv")
    save_text(render_latex(table), out_dir / "main.tex")
    md = render_markdown(table)
    save_text(md, out_dir / "main.md")
    return md
