"""Calibration: expected calibration error and reliability-diagram data.

ECE (Guo et al. 2017; SGLR Tab. B.1) with ``M`` equal-width confidence bins
``((m-1)/M, m/M]``:

    ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|

where the confidence is the largest softmax probability and "acc" is whether
its class is the label. Bins are right-closed (a confidence exactly on an edge
falls in the lower bin; 1.0 in the last), as in the common implementations
(Guo et al.'s ``_ECELoss``, torchmetrics). Edges are ``k / M`` exactly.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soften.evaluation.attacks import ATTACK_KINDS
from soften.evaluation.common import load_eval_model, load_test, provenance, run_fields, setup_device
from soften.io import save_json

log = logging.getLogger("soften.calibration")

DEFAULT_BINS = 15


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def reliability_bins(confidence, correct, n_bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """Per bin: edges, count, accuracy and mean confidence (None when empty)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != corr.shape:
        raise ValueError(f"confidence and correct differ in length: {conf.shape} vs {corr.shape}")
    idx = _bin_index(conf, n_bins)
    bins = []
    for m in range(n_bins):
        sel = idx == m
        count = int(sel.sum())
        bins.append({
            "lower": m / n_bins, "upper": (m + 1) / n_bins, "count": count,
            "accuracy": float(corr[sel].mean()) if count else None,
            "confidence": float(conf[sel].mean()) if count else None,
        })
    return bins


def expected_calibration_error(confidence, correct, n_bins: int = DEFAULT_BINS) -> float:
    """ECE of predictions with top-class ``confidence`` and ``correct`` flags."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def ece_from_logits(logits: torch.Tensor, y: torch.Tensor, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    probs = torch.softmax(logits.detach().double(), dim=1)
    conf, pred = probs.max(1)
    conf, correct = conf.cpu().numpy(), (pred == y).cpu().numpy()
    return {
        "ece": expected_calibration_error(conf, correct, n_bins),
        "accuracy": float(correct.mean()) if correct.size else float("nan"),
        "mean_confidence": float(conf.mean()) if conf.size else float("nan"),
        "bins": reliability_bins(conf, correct, n_bins),
    }


def adversarial_inputs(model, test, params: dict[str, Any], batch_size: int, show: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs under attack ``params`` (natural, pgd, cw, square, autoattack) for the whole ``test``.

    As in AutoAttack, Square (and AutoAttack) only perturb points the model
    classifies correctly, and stop at the first successful query; the other
    points enter the ECE unperturbed."""
    from soften.evaluation.attacks import pgd_examples

    kind = params["kind"]
    if kind in ("square", "autoattack"):
        from soften.evaluation.autoattack import autoattack

        x, y = test.images.float().div(255.0), test.labels
        attacks = ["square"] if kind == "square" else params.get("attacks")
        res = autoattack(model, x, y, eps=params["eps"], version=params.get("version", "standard"),
                         seed=int(params.get("seed", 0)), batch_size=int(params.get("aa_batch_size", 500)),
                         settings=params.get("settings"), attacks=attacks, progress=show, return_adv=True)
        return res["x_adv"], y
    xs, ys = [], []
    for x, y in test.batches(batch_size):
        if kind == "natural":
            xs.append(x)
        elif kind == "pgd":
            xs.append(pgd_examples(model, x, y, params))
        elif kind == "cw":
            from soften.attacks.cw import DEFAULT_KAPPA, cw_loss

            kappa = float(params.get("kappa", DEFAULT_KAPPA))
            xs.append(pgd_examples(model, x, y, {"steps": 20, **params}, loss=lambda z, t: cw_loss(z, t, kappa)))
        else:
            raise ValueError(f"calibration inputs support kinds natural, pgd, cw, square, autoattack; got {kind!r}")
        ys.append(y)
    empty = torch.zeros((0, *test.images.shape[1:]))
    return (torch.cat(xs) if xs else empty), (torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long))


@torch.no_grad()
def _logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def calibrate_checkpoint(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path | None = None,
                         *, progress: bool | None = None) -> dict[str, Any]:
    """ECE and reliability data of ``checkpoint`` on clean and attacked test inputs.

    ``spec``: ``inputs`` (name -> attack params incl. ``kind`` and ``eps``),
    ``n_bins``, ``n_examples``, ``batch_size``, ``device``, ``threads``.
    """
    for name, params in spec["inputs"].items():
        if params["kind"] not in ATTACK_KINDS:
            raise ValueError(f"calibration input {name!r}: unknown attack kind {params['kind']!r}")
    device = setup_device(spec)
    model, ckpt = load_eval_model(checkpoint, device)
    test = load_test(dataset_npz, spec.get("n_examples"), device, ckpt, checkpoint)
    show = sys.stderr.isatty() if progress is None else progress
    n_bins = int(spec.get("n_bins", DEFAULT_BINS))
    results, start = {}, time.time()
    for name, params in spec["inputs"].items():
        t0 = time.time()
        torch.manual_seed(int(params.get("seed", 0)))
        x, y = adversarial_inputs(model, test, params, spec["batch_size"], show)
        results[name] = {**ece_from_logits(_logits(model, x, spec["batch_size"]), y, n_bins),
                         "params": params, "seconds": round(time.time() - t0, 3)}
        log.info("%s %s: ECE %.4f, accuracy %.4f", checkpoint, name, results[name]["ece"], results[name]["accuracy"])
    result = {**run_fields(ckpt, checkpoint), "record": "calibration", "n": len(test), "n_bins": n_bins,
              "inputs": results, "seconds": round(time.time() - start, 3), **provenance(device)}
    if out is not None:
        save_json(result, out)
    return result
