"""Checkpoint contents. All are plain tensors, dicts, lists and numbers, so they
load with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from soften.io import load_torch, save_torch
from soften.models import build_model


def model_checkpoint(state_dict: dict[str, torch.Tensor], *, spec: dict[str, Any], model_args: dict[str, Any], epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """The content of ``best.pt``/``final.pt``: the weights (on CPU), how to rebuild the
    model (``model_args``: arch, num_classes, in_channels), the run's spec, the epoch
    (counted from 1) and its metrics (accuracies as fractions in [0, 1])."""
    return {
        "format": "soften-model-v1",
        "model": {k: v.detach().cpu() for k, v in state_dict.items()},
        "model_args": model_args,
        "spec": spec,
        "epoch": epoch,
        "metrics": metrics,
    }


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a ``best.pt``/``final.pt`` checkpoint (eval mode)."""
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "soften-model-v1":
        raise ValueError(f"{path} is not a soften model checkpoint")
    args = ckpt["model_args"]
    channels = args["in_channels"]
    model = build_model(args["arch"], num_classes=args["num_classes"], in_channels=channels,
                        mean=[0.0] * channels, std=[1.0] * channels)
    model.load_state_dict(ckpt["model"])  # restores the normalisation buffers too
    return model.to(device).eval(), ckpt


def rng_state() -> dict[str, Any]:
    """The global torch RNG state (and CUDA's, when present), for the resume state."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA's only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["model_checkpoint", "load_model", "rng_state", "set_rng_state", "save_torch", "load_torch"]
