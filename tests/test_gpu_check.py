"""``make gpu-check`` in its reduced CPU mode (what CI runs): every step runs or is skipped
with a reason, and the JSON and Markdown say so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_reduced_gpu_check_runs_on_cpu_and_reports_every_step(tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--reduced", "--device", "cpu", "--out", str(tmp_path)],
                          cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=1200)
    (js,) = tmp_path.glob("gpu-check-*-reduced.json")
    result = json.loads(js.read_text())
    steps = {s["step"]: s for s in result["steps"]}
    assert list(steps) == ["device", "bench", "smoke", "tests", "bf16_study"]
    assert result["reduced"] is True and result["device"]["device"] == "cpu"
    failed = {k: s.get("output_tail", s.get("note")) for k, s in steps.items() if s["status"] not in ("passed", "skipped")}
    assert not failed and proc.returncode == 0, failed or proc.stderr[-2000:]
    assert steps["bench"]["status"] == "passed"
    (bench_js,) = [tmp_path / f for f in steps["bench"]["files"]]
    assert json.loads(bench_js.read_text())["mode"] == "quick"
    assert "collected" in steps["smoke"]["summary"]  # reduced: the smoke tests are collected, not run
    assert steps["tests"]["status"] == "passed" and "passed" in steps["tests"]["summary"]
    # CPU emulates bf16 (minutes per step): the reduced mode skips the study and says why.
    assert steps["bf16_study"] == {"step": "bf16_study", "status": "skipped",
                                   "note": "reduced mode: bf16 is emulated on CPU; the study runs on a GPU"}
    md = js.with_suffix(".md").read_text()
    for name in steps:
        assert f"| {name} | {steps[name]['status']} |" in md
