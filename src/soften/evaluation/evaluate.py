"""The evaluate stage: one checkpoint x one attack -> one JSON.

The JSON carries the accuracy, the per-example "still correct" flags
(``mask``, see :func:`soften.evaluation.common.decode_mask`; example ``i`` is
test example ``i``) and attack-specific details such as AutoAttack's robust
count after each of its attacks.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from soften.evaluation.attacks import ATTACK_KINDS, AttackOutput
from soften.evaluation.common import encode_mask, prepare_attack, provenance, run_fields
from soften.attacks.memory import fit_batch_size, halving_on_oom
from soften.io import save_json

log = logging.getLogger("soften.evaluate")


def attack_dataset(model, test, fn, params: dict[str, Any], batch_size: int, *, desc: str, show: bool,
                   keep_adv: bool = False, state_path: str | Path | None = None,
                   ) -> tuple[np.ndarray, dict[str, Any], torch.Tensor | None]:
    """Run attack ``fn`` over ``test``; returns (mask, details, adversarial inputs or None).

    Batched attacks run at ``batch_size`` capped to the device's memory, halved on OOM
    (soften.attacks.memory; ``details['batch_size']`` then says which ran); whole-set
    attacks (AutoAttack) size their own batches and resume from ``state_path``."""
    if getattr(fn, "whole_set", False):
        chunks = [(test.images.float().div(255.0), test.labels)] if len(test) else []
        return _collect(fn, model, chunks, {**params, "progress": show, "state_path": state_path}, 1, desc, False, keep_adv)
    device = test.images.device
    fitted = fit_batch_size(model, tuple(test.images.shape[1:]), device, batch_size, desc) if len(test) else batch_size
    (mask, details, x_adv), used = halving_on_oom(
        lambda b: _collect(fn, model, test.batches(b), params, -(-len(test) // b), desc, show, keep_adv), fitted, desc)
    if used != batch_size:
        details = {**details, "batch_size": used}
    return mask, details, x_adv


def _collect(fn, model, chunks, params, total: int, desc: str, show: bool, keep_adv: bool):
    masks, advs, details = [], [], {}
    for x, y in tqdm(chunks, total=total, desc=desc, disable=not show):
        out = fn(model, x, y, params)
        if isinstance(out, AttackOutput):
            details = out.details
            if keep_adv:
                advs.append(out.x_adv.cpu() if out.x_adv is not None else None)
            out = out.mask
        masks.append(out.cpu())
    mask = torch.cat(masks).numpy().astype(bool) if masks else np.zeros(0, bool)
    x_adv = torch.cat(advs) if keep_adv and advs and all(a is not None for a in advs) else None
    return mask, details, x_adv


def evaluate_checkpoint(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the test split under ``spec['attack']``.

    The model runs in eval mode and fp32 whatever precision training used;
    seeds are fixed so a re-run gives the same numbers.
    """
    params, model, ckpt, test, device, show = prepare_attack(checkpoint, dataset_npz, spec, progress)
    start = time.time()
    # AutoAttack's progress beside the result: a job killed at its time limit resumes after the last finished attack.
    state_path = Path(out).with_name(Path(out).name + ".aa-state.pt") if out is not None else None
    mask, details, _ = attack_dataset(model, test, ATTACK_KINDS[params["kind"]], params, spec["batch_size"],
                                      desc=spec["attack"], show=show, state_path=state_path)
    result = {
        **run_fields(ckpt, checkpoint),
        "record": "evaluation",
        "attack": spec["attack"], "params": params,
        "n": int(mask.size), "correct": int(mask.sum()),
        "accuracy": float(mask.mean()) if mask.size else float("nan"),
        "mask": encode_mask(mask),
        "details": details,
        "seconds": round(time.time() - start, 3),
        **provenance(device),
    }
    if out is not None:
        save_json(result, out)
    log.info("%s %s: %d/%d = %.4f", Path(checkpoint), spec["attack"], result["correct"], result["n"], result["accuracy"])
    return result
