"""The tables stage: gather evaluation JSON into a tidy CSV and paper-style tables.

Tidy CSV (``runs.csv``): one row per run x checkpoint x attack.
Paper-style table (``main.{md,csv,tex}``): one block per (dataset, noise, arch);
rows = method; for each attack, Best / Final / Diff (Best - Final) accuracy in %,
as mean ± std over seeds (sample std, ddof=1; '±' omitted for a single seed).
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


def collect(paths: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for p in paths:
        p = Path(p)
        files = sorted(p.rglob("eval/*.json")) if p.is_dir() else [p]
        for f in files:
            r = json.loads(f.read_text())
            rows.append({k: r[k] for k in KEYS} | {
                "checkpoint": r["checkpoint"], "checkpoint_epoch": r["checkpoint_epoch"], "attack": r["attack"],
                "n": r["n"], "correct": r["correct"], "accuracy": r["accuracy"], "seconds": r["seconds"],
                "file": str(f),
            })
    if not rows:
        raise ValueError("no evaluation results found")
    return pd.DataFrame(rows).sort_values(KEYS + ["checkpoint", "attack"]).reset_index(drop=True)


def _fmt(values: pd.Series) -> str:
    values = values.dropna() * 100
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def summary(df: pd.DataFrame, method_order: list[str] | None = None, attack_order: list[str] | None = None) -> pd.DataFrame:
    """Wide table: index (dataset, noise, arch, method), columns '<attack> Best/Final/Diff'."""
    wide = df.pivot_table(index=KEYS, columns=["attack", "checkpoint"], values="accuracy")
    attacks = attack_order or sorted(df["attack"].unique())
    out = {}
    for attack in attacks:
        if attack not in wide.columns.get_level_values(0):
            continue
        best = wide[attack].get("best")
        final = wide[attack].get("final")
        groups = wide.groupby(level=["dataset", "noise", "arch", "method"])
        out[f"{attack} Best"] = groups.apply(lambda g: _fmt(g[(attack, "best")])) if best is not None else "n/a"
        out[f"{attack} Final"] = groups.apply(lambda g: _fmt(g[(attack, "final")])) if final is not None else "n/a"
        if best is not None and final is not None:
            out[f"{attack} Diff"] = groups.apply(lambda g: _fmt(g[(attack, "best")] - g[(attack, "final")]))
    table = pd.DataFrame(out)
    seeds = df.groupby(["dataset", "noise", "arch", "method"])["seed"].nunique().rename("seeds")
    table = table.join(seeds)
    if method_order:
        rank = {m: i for i, m in enumerate(method_order)}
        table = table.sort_index(level="method", key=lambda idx: idx.map(lambda m: rank.get(m, len(rank))), sort_remaining=False)
        table = table.sort_index(level=["dataset", "noise", "arch"], sort_remaining=False)
    return table


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


def render_markdown(table: pd.DataFrame) -> str:
    parts = []
    for (dataset, noise, arch), block in table.groupby(level=["dataset", "noise", "arch"], sort=False):
        parts.append(f"### {dataset} · noise {noise} · {arch}\n")
        body = block.reset_index(level=["dataset", "noise", "arch"], drop=True)
        parts.append(tabulate(body, headers="keys", tablefmt="github", stralign="right", disable_numparse=True) + "\n")
        columns = [c for c in body.columns if c != "seeds"]
        paper = published(dataset, noise, arch, columns)
        if paper.empty:
            parts.append("*Published numbers:* none for this setting (the papers report CIFAR-10/100 "
                         "and TinyImageNet-200 at eps = 8/255).\n")
        else:
            parts.append("*Published numbers* (as printed in the papers; our runs above):\n")
            parts.append(tabulate(paper, headers="keys", tablefmt="github", stralign="right",
                                  disable_numparse=True, showindex=False) + "\n")
    parts.append("Accuracy (%) on the test split, mean ± std over seeds. Best = checkpoint with the highest "
                 "validation robust accuracy; Final = last epoch; Diff = Best − Final.\n")
    return "\n".join(parts)


def render_latex(table: pd.DataFrame) -> str:
    return tabulate(table.reset_index(), headers="keys", tablefmt="latex_booktabs", showindex=False, disable_numparse=True) + "\n"


def make_tables(inputs: Iterable[str | Path], out_dir: str | Path, *, method_order=None, attack_order=None) -> str:
    out_dir = Path(out_dir)
    df = collect(inputs)
    table = summary(df, method_order, attack_order)
    save_text(df.to_csv(index=False), out_dir / "runs.csv")
    save_text(table.reset_index().to_csv(index=False), out_dir / "main.csv")
    save_text(render_latex(table), out_dir / "main.tex")
    md = render_markdown(table)
    save_text(md, out_dir / "main.md")
    return md
