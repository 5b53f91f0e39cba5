"""What test_paper_smoke_sglr.py and test_paper_smoke_adr.py share: every paper config's whole
DAG at the smoke scale, on CPU, through the real Snakemake: the real dataset readers on archives in the official formats (CIFAR python tarballs
from genuine CIFAR-10 images, a TinyImageNet zip in the cs231n layout), the real
architectures (at the smoke scale's 1/8 width), every method, every attack including
AutoAttack standard, transfer, calibration, sanity, tables with the papers' numbers and
figures. The jobs fork from one warm interpreter (tests/_warm_python.py), so that each
does not spend seconds importing torch for milliseconds of work.

The official archives cannot be downloaded here; the fetch stage is pointed at the
test's archives through the datasets' ``path``/``md5`` options, in an overlay file
given after the paper config (as a user with a local mirror would).

One file per config, so that pytest's two workers (make test: -n 2 --dist loadfile) run
the SGLR and ADR DAGs side by side instead of one after the other on one worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml


from _warm_python import warm_env
from _eval_fixtures import (shared_npz_or_skip, write_cifar10_archive, write_cifar100_archive,
                            write_tinyimagenet_zip)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, dict[str, str]]:
    """dataset name -> fetch options pointing at an official-format archive."""
    out = tmp_path_factory.mktemp("archives")
    with np.load(shared_npz_or_skip(), allow_pickle=False) as f:
        data = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test", "class_names")}
    rng = np.random.default_rng(0)
    md5 = {
        "cifar10": write_cifar10_archive(out / "cifar-10-python.tar.gz", data["x_train"][:60], data["y_train"][:60],
                                         data["x_test"][:20], data["y_test"][:20], data["class_names"]),
        "cifar100": write_cifar100_archive(out / "cifar-100-python.tar.gz", data["x_train"][60:160],
                                           rng.integers(0, 100, 100), data["x_test"][20:40], rng.integers(0, 100, 20)),
        "tinyimagenet": write_tinyimagenet_zip(out / "tiny-imagenet-200.zip"),
    }
    names = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz",
             "tinyimagenet": "tiny-imagenet-200.zip"}
    return {d: {"path": str(out / names[d]), "md5": md5[d]} for d in names}


def run_smoke(config: str, archives: dict, work: Path, env: dict, warm: dict | None = None) -> subprocess.CompletedProcess:
    """``snakemake all`` of ``config`` at the smoke scale in ``work`` (``env``: conftest's
    subprocess_env; ``warm``: conftest's warm_python fixture, its jobs forked from it)."""
    env = warm_env(env, warm)
    paper = yaml.safe_load((REPO / "config" / config).read_text())
    overlay = work / "archives.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {d: {"options": archives[d]} for d in paper["datasets"]}}))
    # --scheduler greedy: the default ILP scheduler stats every ready job's inputs each round
    # (656k stat calls for SGLR's 156 jobs); greedy runs the same jobs, SGLR's smoke 69.6 -> 56.4 s.
    cmd = [sys.executable, "-m", "snakemake", "all", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work),
           "--cores", "2", "--scheduler", "greedy", "--configfile", str(REPO / "config" / config), str(overlay),
           "--config", "scale=smoke"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3000)


def check_tables_and_figures(work: Path, config: str) -> dict[str, str]:
    paper = yaml.safe_load((REPO / "config" / config).read_text())
    results = work / f"{paper['results_dir']}-smoke"
    tables = {}
    for name, exp in paper["experiments"].items():
        md = (results / "tables" / f"{name}.md").read_text()
        tables[name] = md
        assert (results / "tables" / f"{name}.csv").stat().st_size > 0
        assert "\\begin{table}" in (results / "tables" / f"{name}.tex").read_text() or exp.get("kind") == "sanity"
        assert (results / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
        if exp.get("published"):
            # the paper beside the reproduction, never compared at the smoke scale
            assert "↳ paper" in md and "n/c†" in md, name
            assert "smoke scale" in md and "0 reproduced ✓, 0 differs ✗, 0 inconclusive ?" in md, name
    check_verdict_page(results, paper)
    return tables


def check_verdict_page(results: Path, paper: dict) -> None:
    """The verdict page exists at the smoke scale: no cell judged, no claim tested, each saying why."""
    page = json.loads((results / "verdict.json").read_text())
    md = (results / "verdict.md").read_text()
    claims = [c for exp in paper["experiments"].values() for c in exp.get("claims", [])]
    assert claims and len(page["claims"]) == len(claims)
    assert all(c["verdict"] == "not testable" and "at this scale" in c["why"] for c in page["claims"])
    cells = [c for e in page["experiments"] for c in e["cells"]]
    assert cells and all(c["verdict"] == "not comparable" and "smoke scale" in c["why_not_comparable"] for c in cells)
    assert md.startswith("# Verdict") and "not testable at this scale (smoke)" in md


def eval_records(results: Path, pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in results.rglob(pattern)]
