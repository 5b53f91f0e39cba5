"""Gradient-masking sanity checks (Carlini et al. 2019; ADR App. E).

Two sweeps of L-inf PGD (cross-entropy, random start) on the test subset:

- growing radius ``eps`` up to 1 (the whole [0, 1] image box, i.e. unbounded):
  accuracy must fall as eps grows and reach 0 when unbounded (ADR Fig. 6a);
- growing number of steps at the configured eps: accuracy must fall and then
  converge, i.e. the last doubling of steps changes it by at most a tolerance
  (ADR Fig. 6b).

A model whose robustness comes from masked gradients typically fails the
unbounded check: its gradients do not lead PGD anywhere, even with no limit.
The report lists each check with ``passed`` and the numbers behind it.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from soften.attacks import pgd
from soften.evaluation.common import load_eval_model, load_test, provenance, run_fields, setup_device
from soften.io import save_json

log = logging.getLogger("soften.sanity")

DEFAULTS: dict[str, Any] = {
    "eps_multipliers": [0.5, 1, 2, 4, 8],   # times the threat eps; eps = 1 (unbounded) is always added
    "eps_steps": 20,                          # PGD steps in the eps sweep
    "steps": [1, 2, 5, 10, 20, 40, 80],       # PGD steps in the steps sweep (at the threat eps)
    "alpha_fraction": 0.25,                   # step size = alpha_fraction * eps (2/255 at 8/255)
    "unbounded_max_accuracy": 0.0,            # accuracy at eps = 1 must be <= this
    "monotone_tolerance": 0.02,               # allowed rise of accuracy along a sweep
    "converge_tolerance": 0.01,               # |acc(K_last) - acc(K_prev)| allowed
    "seed": 0,
}


def pgd_accuracy(model, test, *, eps: float, steps: int, alpha: float, batch_size: int, seed: int) -> float:
    torch.manual_seed(seed)
    correct = 0
    for x, y in test.batches(batch_size):
        x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == y).sum())
    return correct / max(len(test), 1)


def _monotone(values: list[float], tol: float) -> tuple[bool, float]:
    rise = max([b - a for a, b in zip(values, values[1:])], default=0.0)
    return rise <= tol + 1e-12, rise


def sanity_report(model, test, *, eps: float, batch_size: int, settings: dict[str, Any] | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Run both sweeps on ``model`` (eval mode, fp32) and judge the checks."""
    s = {**DEFAULTS, **(settings or {})}
    eps_values = sorted({min(1.0, float(m) * eps) for m in s["eps_multipliers"]} | {1.0})
    steps_values = sorted({int(k) for k in s["steps"]})
    runs = [("eps", e, int(s["eps_steps"])) for e in eps_values] + [("steps", eps, k) for k in steps_values]
    eps_sweep, steps_sweep = [], []
    for sweep, e, k in tqdm(runs, desc="sanity", disable=not progress):
        acc = pgd_accuracy(model, test, eps=e, steps=k, alpha=s["alpha_fraction"] * e, batch_size=batch_size, seed=s["seed"])
        (eps_sweep if sweep == "eps" else steps_sweep).append({"eps": e, "steps": k, "accuracy": acc})
    clean = pgd_accuracy(model, test, eps=0.0, steps=0, alpha=0.0, batch_size=batch_size, seed=s["seed"])
    eps_acc = [clean] + [r["accuracy"] for r in eps_sweep]
    steps_acc = [r["accuracy"] for r in steps_sweep]
    unbounded = eps_sweep[-1]["accuracy"]
    mono_eps, rise_eps = _monotone(eps_acc, s["monotone_tolerance"])
    mono_steps, rise_steps = _monotone(steps_acc, s["monotone_tolerance"])
    change = abs(steps_acc[-1] - steps_acc[-2]) if len(steps_acc) > 1 else 0.0
    checks = {
        "unbounded_eps_reaches_zero": {
            "passed": unbounded <= s["unbounded_max_accuracy"] + 1e-12,
            "detail": f"accuracy {unbounded:.4f} at eps=1 ({s['eps_steps']} steps); must be <= {s['unbounded_max_accuracy']}"},
        "accuracy_falls_with_eps": {
            "passed": mono_eps,
            "detail": f"largest rise along the eps sweep {rise_eps:.4f}; allowed {s['monotone_tolerance']}"},
        "accuracy_falls_with_steps": {
            "passed": mono_steps,
            "detail": f"largest rise along the steps sweep {rise_steps:.4f}; allowed {s['monotone_tolerance']}"},
        "steps_converge": {
            "passed": change <= s["converge_tolerance"] + 1e-12,
            "detail": f"accuracy changes by {change:.4f} from {steps_values[-2] if len(steps_values) > 1 else '-'} "
                      f"to {steps_values[-1]} steps; allowed {s['converge_tolerance']}"},
    }
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks, "clean_accuracy": clean,
            "eps_sweep": eps_sweep, "steps_sweep": steps_sweep, "settings": s, "eps": eps, "n": len(test)}


def sanity_checkpoint(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path | None = None,
                      *, progress: bool | None = None) -> dict[str, Any]:
    """``spec``: ``eps``, ``settings`` (see DEFAULTS), ``n_examples``, ``batch_size``, ``device``, ``threads``."""
    device = setup_device(spec)
    model, ckpt = load_eval_model(checkpoint, device)
    test = load_test(dataset_npz, spec.get("n_examples"), device, ckpt, checkpoint)
    show = sys.stderr.isatty() if progress is None else progress
    start = time.time()
    report = sanity_report(model, test, eps=spec["eps"], batch_size=spec["batch_size"], settings=spec.get("settings"), progress=show)
    result = {**run_fields(ckpt, checkpoint), "record": "sanity", **report,
              "seconds": round(time.time() - start, 3), **provenance(device)}
    if out is not None:
        save_json(result, out)
    log.info("%s sanity: %s", checkpoint, "passed" if report["passed"] else "FAILED " + ", ".join(
        k for k, c in report["checks"].items() if not c["passed"]))
    return result
