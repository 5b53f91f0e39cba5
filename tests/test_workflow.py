"""End to end: the real Snakemake workflow on a tiny digits config in a temp dir, and its
`snakemake --report`: every experiment's table and figure is in the report, in its own
category, with its caption; the table is also there rendered as HTML."""

import csv
import importlib.util
import json
import re
import zipfile

import pytest

from conftest import REPO, TINY_DIGITS, snakemake_all, write_config

pytestmark = pytest.mark.slow


def test_pipeline_end_to_end_then_nothing_to_do(repo, default_config, tmp_path, subprocess_env):
    grid = {"datasets": ["digits"], "noise": ["none", "symmetric-0.4"], "archs": ["cnn"],
            "methods": ["standard", "pgd-at"], "seeds": [0], "attacks": ["natural", "pgd20"]}
    tiny = {"datasets": {"digits": TINY_DIGITS}, "evaluation": {"n_examples": 100},
            "experiments": {"main": grid, "autoattack": None, "transfer": None, "calibration": None, "masking": None}}
    cfg = write_config(tmp_path / "tiny.yaml", default_config, **tiny)
    first = snakemake_all(tmp_path, cfg, subprocess_env)
    assert first.returncode == 0, first.stderr[-3000:]

    table = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "### digits · noise symmetric-0.4 · cnn" in table
    methods = [l.split("|")[1].strip() for l in table.splitlines() if l.startswith("|") and "---" not in l]
    assert methods.count("pgd-at") == 2 and methods.count("standard") == 2
    cells = list(csv.DictReader((tmp_path / "results" / "tables" / "main.csv").open()))
    # 2 noise x 2 methods, each 2 attacks x (Best, Final, Diff).
    assert len(cells) == 24 and {c["column"] for c in cells} == {"natural", "pgd20"}
    record = json.loads((tmp_path / "results/digits/none/cnn/pgd-at/seed0/eval/best-pgd20.json").read_text())
    assert record["n"] == 100 and record["params"]["steps"] == 20
    for name in ("main.csv", "main.tex"):
        assert (tmp_path / "results" / "tables" / name).stat().st_size > 0
    run = tmp_path / "results" / "digits" / "none" / "cnn" / "pgd-at" / "seed0"
    assert (run / "history.csv").read_text().count("\n") == 3
    assert (tmp_path / "results" / "logs" / "train" / "digits" / "none" / "cnn" / "pgd-at" / "seed0.log").exists()

    figure = tmp_path / "results" / "figures" / "main.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    second = snakemake_all(tmp_path, cfg, subprocess_env)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr


def test_every_evaluation_rule_runs_on_a_tiny_grid(every_rule_run):
    """The default config's whole evaluation suite (AutoAttack, CW, transfer,
    calibration, sanity), shrunk to one 2-epoch run and a few test images
    (conftest.every_rule_run; the report test below reads the same run)."""
    tmp_path, _, proc = every_rule_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = tmp_path / "results" / "tables"
    header = next(l for l in (tables / "main.md").read_text().splitlines() if l.startswith("|"))
    for column in ("natural Best", "pgd20 Best", "cw20 Final"):
        assert column in header
    assert "aa Best" in next(l for l in (tables / "autoattack.md").read_text().splitlines() if l.startswith("|"))
    for name in ("transfer", "calibration", "masking"):
        assert "pgd-at" in (tables / f"{name}.md").read_text(), name
    run = tmp_path / "results" / "digits" / "none" / "cnn" / "pgd-at" / "seed0"
    aa = json.loads((run / "eval" / "best-aa.json").read_text())
    assert aa["n"] == 10 and not (run / "eval" / "final-aa.json").exists()
    for name in ("calibration", "masking", "transfer"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    crafted = list((tmp_path / "results" / "digits" / "transfer" / "cnn-at-s100").glob("*.pt"))
    assert sorted(p.stem for p in crafted) == ["cw20", "pgd10"]


def _snakemake(workdir, config, env, *extra):
    proc = snakemake_all(workdir, config, env, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _js_object(page: str, name: str) -> dict:
    """A `var NAME = {...};` literal of the report page (Snakemake writes them as JSON)."""
    match = re.search(rf"^\s*var {name} = (\{{.*\}});\s*$", page, re.MULTILINE)
    assert match, f"no '{name}' object in the report"
    return json.loads(match.group(1))


def test_report_holds_every_table_and_figure(every_rule_run, default_config, tmp_path, subprocess_env):
    # The run of every evaluation rule (conftest.every_rule_run), the one the test above checks.
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
