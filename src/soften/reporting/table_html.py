"""A table's Markdown as a standalone HTML page, for the Snakemake report.

Snakemake's report shows HTML results inline and offers every other file type
(Markdown, CSV, LaTeX) only as a download, so each experiment's table also
gets an ``.html`` rendering of exactly the Markdown the ``tables`` stage wrote.
Numeric cells are right-aligned so that digits line up down a column.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

#: A cell holding a number (sign, "± std", "%"), or the tables' n/a and n/c† marks: right-aligned.
_NUMERIC = re.compile(r"^\s*([-+−]?\d[\d.,]*\s*(±\s*\d[\d.,]*)?\s*%?|n/a|n/c†?|nan)\s*$", re.IGNORECASE)
_CELL = re.compile(r"<td>(.*?)</td>", re.DOTALL)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; }
th { border-bottom: 2px solid #444; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:hover td { background: #f4f7fb; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def _align(match: re.Match) -> str:
    text = match.group(1)
    plain = re.sub(r"<[^>]+>", "", text)
    return f'<td class="num">{text}</td>' if plain.strip() and _NUMERIC.match(plain) else match.group(0)


def markdown_page(markdown: str, title: str) -> str:
    """``markdown`` (GitHub-style tables included) as one self-contained HTML page."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    body = _CELL.sub(_align, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")
