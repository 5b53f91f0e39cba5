"""Black-box transfer attacks (SGLR Tab. B.3).

Adversarial examples are crafted once on a source model (e.g. a ResNet-34 or
ResNet-50 trained with PGD-AT by the same pipeline) with a white-box attack
(PGD-10 or CW-inf) and saved as an artifact; every target checkpoint is then
evaluated on that same set. Targets never see the source's gradients.

A transfer set records the sha256 of the dataset file it was crafted from; a
target is only evaluated on it when the target was trained on that same file
(the sha256 its checkpoint records), and only when the set's images are finite
and in [0, 1].
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from soften.data.fetch import dataset_digest
from soften.errors import CorruptFileError
from soften.evaluation.attacks import pgd_examples
from soften.evaluation.common import (check_inputs, encode_mask, load_eval_model, prepare_attack, provenance, run_fields,
                                      setup_device)
from soften.io import load_torch, save_json, save_torch

log = logging.getLogger("soften.transfer")

FORMAT = "soften-transfer-v1"


def craft_examples(model, x: torch.Tensor, y: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    kind = params["kind"]
    if kind == "pgd":
        return pgd_examples(model, x, y, params)
    if kind == "cw":
        from soften.attacks.cw import DEFAULT_KAPPA, cw_loss

        kappa = float(params.get("kappa", DEFAULT_KAPPA))
        return pgd_examples(model, x, y, {"steps": 20, **params}, loss=lambda z, t: cw_loss(z, t, kappa))
    raise ValueError(f"transfer attacks craft with kind 'pgd' or 'cw', got {kind!r}")


def craft_transfer(source_checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], out: str | Path,
                   *, progress: bool | None = None) -> dict[str, Any]:
    """Craft adversarial test examples on the source model and save them to ``out`` (.pt).

    ``spec``: ``source`` (name), ``attack`` (name), ``params`` (kind pgd|cw, eps,
    steps, ...), ``n_examples``, ``batch_size``, ``device``, ``threads``.
    """
    params, model, ckpt, test, device, show = prepare_attack(source_checkpoint, dataset_npz, spec, progress)
    start = time.time()
    advs, correct = [], 0
    for x, y in tqdm(test.batches(spec["batch_size"]), total=-(-len(test) // spec["batch_size"]),
                     desc=f"craft {spec['attack']}", disable=not show):
        x_adv = craft_examples(model, x, y, params)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == y).sum())
        advs.append(x_adv.cpu())
    x_adv = torch.cat(advs) if advs else torch.zeros((0, *test.images.shape[1:]))
    check_inputs(x_adv, f"the {spec['attack']} set crafted on {source_checkpoint}")
    n = len(test)
    meta = {
        "source_name": spec.get("source"), "source": run_fields(ckpt, source_checkpoint),
        "source_checkpoint": str(source_checkpoint), "attack": spec["attack"], "params": params,
        "n": n, "source_accuracy": correct / n if n else float("nan"),
        "dataset_npz": str(dataset_npz), "dataset_sha256": dataset_digest(dataset_npz),
        "seconds": round(time.time() - start, 3), **provenance(device),
    }
    # The set is a pipeline output: its bytes must not depend on the wall clock, so the time goes to the log.
    untimed = {k: v for k, v in meta.items() if k != "seconds"}
    save_torch({"format": FORMAT, "x_adv": x_adv.float(), "y": test.labels.cpu(), "meta": untimed}, out)
    log.info("crafted %d %s examples on %s (source accuracy %.4f) in %.1fs", n, spec["attack"], source_checkpoint,
             meta["source_accuracy"], meta["seconds"])
    return meta


def load_crafted(path: str | Path) -> dict[str, Any]:
    """A transfer set, checked: finite [0, 1] images, one integer label each, its provenance."""
    crafted = load_torch(path)
    if not isinstance(crafted, dict) or crafted.get("format") != FORMAT or not {"x_adv", "y", "meta"} <= crafted.keys():
        raise CorruptFileError(path, "is not a soften transfer set", "re-create it with craft_transfer")
    x, y = crafted["x_adv"], crafted["y"]
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.ndim != 4 or len(x) != len(y) \
            or y.is_floating_point() or "dataset_sha256" not in crafted["meta"]:
        raise CorruptFileError(path, "is an incomplete soften transfer set (images, labels or dataset hash missing "
                                     "or mismatched)", "re-create it with craft_transfer")
    check_inputs(x, path)
    return crafted


def trained_dataset_sha256(ckpt: dict[str, Any], checkpoint: str | Path) -> str:
    """The sha256 of the dataset file the checkpoint's run trained on: recorded in the
    checkpoint, else (older checkpoints) computed from the file its spec names."""
    if ckpt.get("dataset_sha256"):
        return ckpt["dataset_sha256"]
    path = Path(ckpt["spec"].get("dataset_npz", ""))
    if not path.is_file():
        raise CorruptFileError(checkpoint, f"records no dataset hash and its dataset file {path} is not here",
                               "retrain it with this soften version")
    return dataset_digest(path)


def evaluate_transfer(target_checkpoint: str | Path, crafted_path: str | Path, spec: dict[str, Any], out: str | Path | None = None) -> dict[str, Any]:
    """Accuracy of the target checkpoint on a crafted transfer set (one JSON)."""
    device = setup_device(spec)
    model, ckpt = load_eval_model(target_checkpoint, device)
    crafted = load_crafted(crafted_path)
    source_dataset, target_dataset = crafted["meta"]["source"]["dataset"], ckpt["spec"]["dataset"]
    if source_dataset != target_dataset:
        raise ValueError(f"{crafted_path} was crafted on {source_dataset!r} but {target_checkpoint} is a {target_dataset!r} model")
    crafted_sha, target_sha = crafted["meta"]["dataset_sha256"], trained_dataset_sha256(ckpt, target_checkpoint)
    if crafted_sha != target_sha:
        raise CorruptFileError(crafted_path, f"was crafted on {source_dataset} file sha256 {crafted_sha[:16]}… but "
                                             f"{target_checkpoint} was trained on sha256 {target_sha[:16]}… (another "
                                             "version or subset of the data)",
                               "re-create the set and retrain the target from the same dataset file")
    start = time.time()
    x_adv, y = crafted["x_adv"], crafted["y"]
    masks = []
    with torch.no_grad():
        for i in range(0, len(y), spec["batch_size"]):
            xb, yb = x_adv[i:i + spec["batch_size"]].to(device), y[i:i + spec["batch_size"]].to(device)
            masks.append((model(xb).argmax(1) == yb).cpu())
    mask = torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool)
    meta = crafted["meta"]
    n = int(mask.numel())
    result = {
        **run_fields(ckpt, target_checkpoint), "record": "transfer",
        "source_name": meta["source_name"], "source": meta["source"], "attack": meta["attack"], "params": meta["params"],
        "crafted": str(crafted_path), "source_accuracy": meta["source_accuracy"],
        "n": n, "correct": int(mask.sum()), "accuracy": float(mask.float().mean()) if n else float("nan"),
        "mask": encode_mask(mask), "seconds": round(time.time() - start, 3), **provenance(device),
    }
    if out is not None:
        save_json(result, out)
    log.info("%s on %s: %d/%d = %.4f", target_checkpoint, crafted_path, result["correct"], n, result["accuracy"])
    return result
