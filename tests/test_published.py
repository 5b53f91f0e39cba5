"""The published numbers soften prints are the papers' own: every row of
soften/reporting/reference/paper_numbers.yaml is found, digit for digit, in the paper's text
(../shared/papers), and every paper table a config names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from soften.reporting.published import match_column, match_row, parse_value, sources

REPO = Path(__file__).resolve().parents[1]
PAPERS = (REPO / "../shared/papers").resolve()
PAPER_FILES = {"SGLR (CVPR 2024)": "sglr-soften-to-defend-cvpr2024.md",
               "ADR (NeurIPS 2023)": "adr-annealing-self-distillation-neurips2023.md"}
NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def paper_lines(paper: str) -> list[list[str]]:
    """Each line of the paper as its number tokens, as printed (bold tags and ADR Tab. 2's
    '(+ 1.12)' improvement notes removed)."""
    path = PAPERS / PAPER_FILES[paper]
    if not path.is_file():
        pytest.skip(f"paper text not found at {path}")
    out = []
    for line in path.read_text().splitlines():
        line = re.sub(r"</?b>", "", line)
        line = re.sub(r"\([+-] ?\d+(?:\.\d+)?\)", " ", line)
        out.append([t for t in re.split(r"[\s±]+", line) if NUMBER.match(t)])
    return out


def contains(line: list[str], values: list[str]) -> bool:
    return any(line[i:i + len(values)] == values for i in range(len(line) - len(values) + 1))


def row_sequences(table: dict, row: dict) -> list[list[str]]:
    """What of the row must appear contiguously in one line of the paper, in column order."""
    printed = {**{c: row[c] for c in table["columns"] if c in row}, **row.get("printed", {})}
    values = [v for c in table["columns"] if c in printed for v in printed[c]]
    if any("±" in v for v in values):   # mean and std sit on two lines (ADR Tab. 7)
        parts = [str(v).split("±") for v in values]
        return [[p[0].strip() for p in parts], [p[1].strip() for p in parts]]
    if table["parts"] == ["value"] and any("params" in r for r in table["rows"]):
        return [[v] for v in values]       # an r x T grid: one value per cell, checked by the grid test
    sources_ = list(dict.fromkeys(str(col.get("source")) for col in table["columns"].values()))
    if len(sources_) > 1:                  # a block per transfer source (SGLR Tab. B.3)
        return [[v for c, col in table["columns"].items() if str(col.get("source")) == src and c in printed
                 for v in printed[c]] for src in sources_]
    return [values]


@pytest.mark.parametrize("key", sorted(sources()))
def test_every_published_row_is_in_the_paper(key):
    table = sources()[key]
    lines = paper_lines(table["paper"])
    for row in table["rows"]:
        for seq in row_sequences(table, row):
            assert any(contains(line, seq) for line in lines), f"{key}: {row} -> {seq} not found in the paper"
        for column in table["columns"]:
            if column in row:
                assert len(row[column]) == len(table["parts"]), f"{key}: {row}"
                assert all(isinstance(v, str) for v in row[column]), "values are strings, as printed"


def test_sglr_table4_grid_is_the_papers():
    table = sources()["sglr-tab4"]
    lines = paper_lines(table["paper"])
    for t in (1.0, 1.5, 2.0):
        cells = sorted((r["params"]["sglr"]["r"], r["SA"][0], r["RA"][0]) for r in table["rows"]
                       if r["params"]["sglr"]["temperature"] == t)
        assert [c[0] for c in cells] == [0.0, 0.2, 0.4, 0.6, 0.8]
        assert any(contains(line, [c[1] for c in cells]) for line in lines), f"T={t} SA"
        assert any(contains(line, [c[2] for c in cells]) for line in lines), f"T={t} RA"


def test_diffs_are_best_minus_final_up_to_rounding():
    """A printed Diff differs from Best - Final by at most the rounding of the printed values."""
    for key, table in sources().items():
        if table["parts"] != ["Best", "Final", "Diff"]:
            continue
        for row in table["rows"]:
            if "sic" in row:        # a contradiction of the paper's, recorded in the row
                continue
            for column in table["columns"]:
                best, final, diff = (parse_value(v).value for v in row[column])
                assert abs(best - final - diff) <= 0.11, f"{key} {row['method']} {column}"


def test_matching_finds_rows_and_columns_by_setting():
    tab2 = sources()["sglr-tab2"]
    row = {"dataset": "cifar10", "noise": "none", "arch": "resnet18", "method": "pgd-at+sglr",
           "base_method": "pgd-at+sglr", "method_params": {}}
    assert match_row(tab2, row)["natural"][0] == "82.9"
    assert match_row(tab2, {**row, "method": "my-variant"}) is None       # a variant is not the paper's row
    assert match_column(tab2, {"kind": "pgd", "steps": 20}) == "pgd20"
    assert match_column(tab2, {"kind": "pgd", "steps": 10}) is None       # PGD-10 is not the paper's PGD-20
    assert match_column(tab2, {"kind": "autoattack", "version": "plus"}) is None


def test_configs_name_existing_paper_tables():
    for name in ("sglr", "adr"):
        cfg = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
        for exp in cfg["experiments"].values():
            assert exp.get("published") is None or exp["published"] in sources()
