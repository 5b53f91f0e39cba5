"""The LaTeX tables: the papers' layout (attack over Best / Final / Diff), numbers
right-aligned, a caption, special characters escaped; and they compile (when a
pdflatex is installed: Debian's texlive-latex-base + texlive-latex-recommended)."""

import re
import shutil
import subprocess

import pytest

from soften.reporting.tables import make_table
from test_tables import record, spec


def _cells(line: str) -> int:
    """Columns a tabular row spans (\\multicolumn{n} counts n)."""
    row = line.rstrip().removesuffix("\\\\")
    return sum(int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", c)) else 1 for c in row.split(" & "))


@pytest.fixture()
def tex(tmp_path):
    files = []
    for seed, best in [(0, 100), (1, 120)]:
        for attack, final in [("natural", 150), ("pgd20", 80)]:
            files.append(record(tmp_path, method="pgd-at", seed=seed, ckpt="best", attack=attack, correct=best))
            files.append(record(tmp_path, method="pgd-at", seed=seed, ckpt="final", attack=attack, correct=final))
    out = tmp_path / "tables" / "t.md"
    make_table(files, spec(methods=["pgd-at"], attacks=["natural", "pgd20"], title="100% of A & B_1"), out)
    return out.with_suffix(".tex").read_text()


def test_latex_layout_caption_and_escaping(tex):
    lines = tex.splitlines()
    assert lines.index(next(l for l in lines if l.startswith("\\caption{"))) < lines.index("\\begin{tabular}{lrrrrrrr}")
    assert "\\caption{100\\% of A \\& B\\_1 — digits · noise none · cnn}" in tex
    # method | natural Best Final Diff | pgd20 Best Final Diff | seeds: 8 columns in every row.
    rows = [l for l in lines if l.endswith("\\\\")]
    assert [_cells(r) for r in rows] == [8, 8, 8]
    assert rows[0] == " & \\multicolumn{3}{c}{natural} & \\multicolumn{3}{c}{pgd20} &  \\\\"
    assert "\\cmidrule(lr){2-4} \\cmidrule(lr){5-7}" in tex
    assert rows[1] == "method & Best & Final & Diff & Best & Final & Diff & seeds \\\\"
    # pgd20 Best: 50% and 60% of 200 -> 55.00 ± 7.07 (hand computation, sample std).
    assert rows[2].split(" & ")[4] == "55.00 $\\pm$ 7.07"
    assert tex.count("{") == tex.count("}")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex installed")
def test_latex_table_compiles(tex, tmp_path):
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
