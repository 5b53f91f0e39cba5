"""``make gpu-check``: what only a GPU shows, in one command (about 10 minutes on one H100).

Steps, each in its own process with its own time limit, so one failure is recorded
and the others still run:

1. ``device``: the GPU soften resolves (soften.devices: name, index, compute
   capability, driver), or why it cannot use one;
2. ``bench``: ``python -m soften bench --no-mini`` (soften.tools.bench: step times,
   method overheads, speed options, AutoAttack, jobs per GPU), its JSON in ``bench/``;
3. ``smoke``: the smoke scale of config/sglr.yaml and config/adr.yaml through
   Snakemake (tests/test_paper_smoke_sglr.py and _adr.py; they skip without ../shared/data):
   the GPU path of every stage, its networks at the smoke scale's 1/8 width (the
   published widths on the GPU are ``bench``'s);
4. ``tests``: ``pytest tests/test_precision.py tests/test_speed.py`` (those present)
   on this machine's device;
5. ``bf16_study``: benchmarks/bf16_study.py, the fp32/bf16 short study (skipped,
   with a note, where the file is absent).

Writes ``<out>/gpu-check-<device>.json`` and ``.md``. ``--reduced`` is the CPU
version run by CI (tests/test_gpu_check.py): the same steps at sizes of seconds
(bench ``--quick``; the smoke only collected; of the tests, the quick ones that do not
torch.compile, as make test runs both files itself; bf16_study skipped): it checks the
machinery, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Seconds each step may take on the GPU; together within the 10 minutes the check promises.
LIMITS = {"bench": 240, "smoke": 240, "tests": 60, "bf16_study": 60}
REDUCED_LIMITS = {"bench": 300, "smoke": 120, "tests": 120, "bf16_study": 300}


def device_info(device: str) -> dict[str, Any]:
    """The device soften resolves for ``device``, described; ``error`` where it refuses."""
    import torch

    from soften import devices
    from soften.errors import SoftenError

    try:
        resolved = devices.resolve_device(device)
    except SoftenError as err:
        return {"device": None, "error": str(err)}
    info: dict[str, Any] = {"device": resolved, "torch": torch.__version__, "cuda": torch.version.cuda}
    if resolved.startswith("cuda"):
        index = torch.cuda.current_device()
        info.update(description=devices.describe_gpu(index), name=torch.cuda.get_device_name(index),
                    capability=".".join(map(str, torch.cuda.get_device_capability(index))),
                    driver=devices.driver_version(), arch_list=torch.cuda.get_arch_list())
    else:
        from soften.tools.bench import device_name

        info.update(description="CPU", name=device_name(torch.device("cpu")))
    return info


def run_step(name: str, cmd: list[str], limit: int, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``; its status (passed / failed / timeout), seconds, and the tail of its output."""
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=limit)
        status, code, output = ("passed" if proc.returncode == 0 else "failed"), proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        status, code = "timeout", None
        output = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
    return {"step": name, "status": status, "returncode": code, "seconds": round(time.time() - start, 1),
            "command": " ".join(cmd), "output_tail": output[-3000:]}


def pytest_summary(output: str) -> str | None:
    """pytest's last summary line (``3 passed, 1 skipped in 4.2s``), if any."""
    lines = [ln.strip("= ").strip() for ln in output.splitlines() if re.search(r"\b(passed|failed|skipped|error|tests? collected|deselected)\b", ln)]
    return lines[-1] if lines else None


def skipped_only(summary: str | None) -> bool:
    return bool(summary) and "skipped" in summary and not re.search(r"\b(passed|failed|error)\b", summary)


def check(out: Path, *, reduced: bool, device: str) -> dict[str, Any]:
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PATH": f"{Path(py).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    limits = REDUCED_LIMITS if reduced else LIMITS
    info = device_info(device)
    result: dict[str, Any] = {"reduced": reduced, "device": info, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "steps": []}
    if info["device"] is None or (not reduced and not info["device"].startswith("cuda")):
        result["steps"].append({"step": "device", "status": "failed",
                                "note": info.get("error") or "no CUDA GPU: run with --reduced on a CPU"})
        return result
    result["steps"].append({"step": "device", "status": "passed", "note": info["description"]})

    bench_out = out / "bench"
    bench = [py, "-m", "soften", "bench", "--device", info["device"], "--out", str(bench_out)]
    # No mini run (a real 30-epoch run): the smoke step covers the pipeline end to end.
    step = run_step("bench", bench + ["--no-mini"] + (["--quick"] if reduced else []), limits["bench"], env)
    step["files"] = sorted(str(p.relative_to(out)) for p in bench_out.glob("*.json")) if bench_out.is_dir() else []
    result["steps"].append(step)

    smoke = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_paper_smoke_sglr.py",
             "tests/test_paper_smoke_adr.py"] + (["--collect-only"] if reduced else [])
    result["steps"].append(run_step("smoke", smoke, limits["smoke"], env))

    tests = [t for t in ("tests/test_precision.py", "tests/test_speed.py") if (REPO / t).is_file()]
    pytest_cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    # reduced: make test runs these files itself; here a real pytest run of their quick
    # non-compiling tests checks the step's machinery (torch.compile costs minutes cold on CPU)
    quick = ["-m", "not slow", "-k", "not compile and not compiled and not inductor"]
    result["steps"].append(run_step("tests", pytest_cmd + (quick if reduced else []), limits["tests"], env))

    study = REPO / "benchmarks" / "bf16_study.py"
    if reduced:
        # CPUs without native bf16 emulate it: the --quick bf16 leg ran past 30 minutes on a 2-core
        # CI-sized machine (its fp32 leg: ~2 minutes). The study is a GPU measurement.
        result["steps"].append({"step": "bf16_study", "status": "skipped",
                                "note": "reduced mode: bf16 is emulated on CPU; the study runs on a GPU"})
    elif study.is_file():
        cmd = [py, str(study), "--out", str(out / "bf16_study")]
        result["steps"].append(run_step("bf16_study", cmd, limits["bf16_study"], env))
    else:
        result["steps"].append({"step": "bf16_study", "status": "skipped", "note": "benchmarks/bf16_study.py is absent"})

    for step in result["steps"]:
        if step["step"] in ("smoke", "tests") and "output_tail" in step:
            step["summary"] = pytest_summary(step["output_tail"])
            if step["status"] == "passed" and skipped_only(step["summary"]):
                step["status"] = "skipped"  # e.g. the smoke without ../shared/data
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def markdown(result: dict[str, Any]) -> str:
    info = result["device"]
    lines = [f"# soften gpu-check{' (reduced, CPU)' if result['reduced'] else ''}: {info.get('name') or 'no device'}", "",
             f"{info.get('description') or info.get('error')}; started {result['started']}", "",
             "| step | status | seconds | note |", "|---|---|---|---|"]
    for s in result["steps"]:
        note = s.get("summary") or s.get("note") or ""
        lines.append(f"| {s['step']} | {s['status']} | {s.get('seconds', '')} | {note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def slug(result: dict[str, Any]) -> str:
    name = result["device"].get("name") or "no-device"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ("-reduced" if result["reduced"] else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reduced", action="store_true", help="the CPU version for CI: every step at sizes of seconds")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    ap.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N, or cpu (with --reduced)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = check(out, reduced=args.reduced, device=args.device)
    name = slug(result)
    js, md = out / f"gpu-check-{name}.json", out / f"gpu-check-{name}.md"
    js.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(markdown(result))
    print(md.read_text(), end="")
    print(f"wrote {js} and {md}", file=sys.stderr)
    return 0 if all(s["status"] in ("passed", "skipped") for s in result["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
