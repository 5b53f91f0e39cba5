"""`snakemake --report`: every experiment's table and figure is in the report, in its
own category, with its caption; the table is also there rendered as HTML."""

import importlib.util
import json
import re
import zipfile

import pytest

from conftest import REPO, snakemake_all

pytestmark = pytest.mark.slow


def _snakemake(workdir, config, env, *extra):
    proc = snakemake_all(workdir, config, env, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _js_object(page: str, name: str) -> dict:
    """A `var NAME = {...};` literal of the report page (Snakemake writes them as JSON)."""
    match = re.search(rf"^\s*var {name} = (\{{.*\}});\s*$", page, re.MULTILINE)
    assert match, f"no '{name}' object in the report"
    return json.loads(match.group(1))


@pytest.mark.xdist_group("every_rule_run")
def test_report_holds_every_table_and_figure(every_rule_run, default_config, tmp_path, subprocess_env):
    # The run of every evaluation rule (conftest.every_rule_run), shared with test_workflow.py.
    work, cfg, first = every_rule_run
    assert first.returncode == 0, first.stderr[-3000:]
    _snakemake(work, cfg, subprocess_env, "--report", str(tmp_path / "report.zip"))

    results = work / "results"
    experiments = ("main", "autoattack", "transfer", "calibration", "masking")
    with zipfile.ZipFile(tmp_path / "report.zip") as zf:
        names = zf.namelist()
        page = zf.read("report/report.html").decode()
        stored = {n.rsplit("/", 1)[-1]: zf.read(n) for n in names if n.startswith("report/data/raw/")}

    for exp in experiments:
        # The very bytes the pipeline wrote, figure and tables alike.
        assert stored[f"{exp}.png"] == (results / "figures" / f"{exp}.png").read_bytes()
        for ext in ("html", "csv", "tex"):
            assert stored[f"{exp}.{ext}"] == (results / "tables" / f"{exp}.{ext}").read_bytes(), (exp, ext)

    # The HTML table shows the numbers of the Markdown table (read back from the eval JSON).
    natural = json.loads((results / "digits/none/cnn/pgd-at/seed0/eval/best-natural.json").read_text())
    table = stored["main.html"].decode()
    assert f'<td class="num">{100 * natural["accuracy"]:.2f}</td>' in table
    assert "<td>pgd-at</td>" in table

    categories = _js_object(page, "categories")
    # Every demo title starts "Digits demo:", so each experiment is its own category by name,
    # and the verdict page comes first (its category sorts before every experiment's).
    assert set(categories) == {"0 · Verdict", *experiments} and sorted(categories)[0] == "0 · Verdict"
    assert sorted(categories["0 · Verdict"]["verdict"]) == ["results/verdict.html", "results/verdict.json"]
    assert categories["main"]["figure"] == ["results/figures/main.png"]
    assert sorted(categories["main"]["table"]) == [f"results/tables/main.{e}" for e in ("csv", "html", "tex")]

    entries = _js_object(page, "results")
    title = default_config["experiments"]["main"]["title"]
    assert title in entries["results/tables/main.html"]["caption"]
    assert "PGD radius" in entries["results/figures/masking.png"]["caption"]  # the sanity caption
    assert entries["results/figures/main.png"]["labels"] == {"experiment": "main", "kind": "accuracy", "file": "figure"}

    # tracking says how a run reports, not what it computes: switching it on re-runs nothing.
    proc = _snakemake(work, cfg, subprocess_env, "-n", "--config", "tracking=tensorboard")
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # Under a cluster executor tables and figures run on the submitting host (localrules):
    # the real SLURM plugin on a host without SLURM remakes them without any sbatch.
    if importlib.util.find_spec("snakemake_executor_plugin_slurm"):  # in the dev extra
        for f in (results / "tables" / "main.md", results / "figures" / "main.png"):
            f.unlink()
        proc = _snakemake(work, cfg, subprocess_env, "--profile", str(REPO / "workflow" / "profiles" / "slurm"))
        log = proc.stdout + proc.stderr
        assert "localrule tables:" in log and "localrule figures:" in log
        assert (results / "figures" / "main.png").exists()
