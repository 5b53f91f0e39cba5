"""Pieces every evaluation job shares: the fp32/eval-mode model, the test
subset, compact per-example masks, and provenance fields."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

import soften
from soften.config import resolve_device
from soften.data import DeviceData, load_dataset_npz
from soften.training.checkpoint import load_model


def setup_device(spec: dict[str, Any]) -> torch.device:
    device = torch.device(resolve_device(spec.get("device", "cpu")))
    if device.type == "cpu":
        torch.set_num_threads(int(spec.get("threads", 1)))
    return device


def load_eval_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's model in eval mode and fp32, whatever precision training used."""
    model, ckpt = load_model(checkpoint, device)
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks need input gradients only
    return model, ckpt


def load_test(dataset_npz: str | Path, n_examples: int | None, device: torch.device) -> DeviceData:
    """The first ``n_examples`` of the test split (all when None)."""
    arrays = load_dataset_npz(dataset_npz)
    return DeviceData.from_numpy(arrays["x_test"], arrays["y_test"], device).head(n_examples)


def encode_mask(mask: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """A boolean vector as JSON: ``{"n", "packbits_hex"}`` (np.packbits, big-endian bit order)."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    return {"n": int(mask.size), "packbits_hex": np.packbits(mask).tobytes().hex()}


def decode_mask(encoded: dict[str, Any]) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(encoded["packbits_hex"]), dtype=np.uint8))
    return bits[: encoded["n"]].astype(bool)


def run_fields(ckpt: dict[str, Any], checkpoint: str | Path) -> dict[str, Any]:
    run = ckpt["spec"]
    return {"dataset": run["dataset"], "noise": run["noise"], "arch": run["arch"], "method": run["method"],
            "seed": run["seed"], "checkpoint": Path(checkpoint).stem, "checkpoint_epoch": ckpt["epoch"]}


def provenance(device: torch.device) -> dict[str, Any]:
    return {"device": str(device), "torch": str(torch.__version__), "soften": soften.__version__,
            "python": platform.python_version()}
