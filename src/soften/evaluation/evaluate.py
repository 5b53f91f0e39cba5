"""The evaluate stage: one checkpoint x one attack -> one JSON."""

from __future__ import annotations

import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import soften
from soften.config import resolve_device
from soften.data import DeviceData, load_dataset_npz
from soften.evaluation.attacks import ATTACK_KINDS
from soften.io import save_json
from soften.training.checkpoint import load_model

log = logging.getLogger("soften.evaluate")


def evaluate_checkpoint(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the test split under ``spec['attack']``.

    The model runs in eval mode and fp32 whatever precision training used;
    seeds are fixed so a re-run gives the same numbers.
    """
    params = spec["params"]
    kind = params["kind"]
    if kind not in ATTACK_KINDS:
        raise ValueError(f"unknown attack kind {kind!r}; known: {sorted(ATTACK_KINDS)}")
    device = torch.device(resolve_device(spec["device"]))
    if device.type == "cpu":
        torch.set_num_threads(int(spec.get("threads", 1)))
    torch.manual_seed(int(params.get("seed", 0)))
    model, ckpt = load_model(checkpoint, device)
    model.float().eval()
    arrays = load_dataset_npz(dataset_npz)
    test = DeviceData.from_numpy(arrays["x_test"], arrays["y_test"], device).head(spec.get("n_examples"))
    fn = ATTACK_KINDS[kind]
    show = sys.stderr.isatty() if progress is None else progress
    masks = []
    start = time.time()
    batches = list(range(0, len(test), spec["batch_size"]))
    for x, y in tqdm(test.batches(spec["batch_size"]), total=len(batches), desc=f"{spec['attack']}", disable=not show):
        masks.append(fn(model, x, y, params).cpu())
    mask = torch.cat(masks).numpy().astype(bool) if masks else np.zeros(0, bool)
    run = ckpt["spec"]
    result = {
        "dataset": run["dataset"], "noise": run["noise"], "arch": run["arch"], "method": run["method"],
        "seed": run["seed"], "checkpoint": Path(checkpoint).stem, "checkpoint_epoch": ckpt["epoch"],
        "attack": spec["attack"], "params": params,
        "n": int(mask.size), "correct": int(mask.sum()),
        "accuracy": float(mask.mean()) if mask.size else float("nan"),
        "seconds": round(time.time() - start, 3),
        "device": str(device), "torch": torch.__version__, "soften": soften.__version__,
        "python": platform.python_version(),
    }
    if out is not None:
        save_json(result, out)
    log.info("%s %s: %d/%d = %.4f", Path(checkpoint), spec["attack"], result["correct"], result["n"], result["accuracy"])
    return result
