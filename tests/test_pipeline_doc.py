"""docs/pipeline.md's stage table: one row per stage, rule = command = function, and
each command with the flags its job really gets (soften.pipeline.jobs)."""

import re

from soften.pipeline.codedeps import stage_names
from soften.pipeline.jobs import COMMANDS, PLACED, PLACEMENT


def test_stage_table_matches_the_jobs(repo):
    doc = (repo / "docs" / "pipeline.md").read_text()
    rows = {m.group(1): m for m in re.finditer(r"^\| `(\w+)` \| `(python -m soften (\w+)[^`]*)` \| `soften\.pipeline\.stages\.(\w+)` \|",
                                               doc, re.M)}
    assert list(rows) == stage_names()
    for stage, row in rows.items():
        assert row.group(3) == stage and row.group(4) == stage
        flags = lambda text: re.findall(r"--[a-z-]+", text)  # noqa: E731
        assert flags(row.group(2)) == flags(COMMANDS[stage] + (PLACEMENT if stage in PLACED else "")), stage
