"""Pieces every evaluation job shares: the fp32/eval-mode model, the test
subset, compact per-example masks, and provenance fields."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import soften
from soften.data import DeviceData, load_dataset_npz
from soften.devices import PLACEMENT_KEYS, resolve_device
from soften.errors import CorruptFileError
from soften.models.checkpoint import load_model


def setup_device(spec: dict[str, Any]) -> torch.device:
    """The evaluation job's device. Convolutions and matrix products run in true fp32:
    on Ampere and newer GPUs PyTorch's default runs cuDNN convolutions in TF32 (a
    10-bit mantissa), which an "fp32" evaluation must not silently do."""
    device = torch.device(resolve_device(spec.get("device", "cpu"), int(spec.get("gpu_slots", 1))))
    if device.type == "cpu":
        torch.set_num_threads(int(spec.get("threads", 1)))
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return device


def load_eval_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's model in eval mode and fp32, whatever precision training used
    (refused if any parameter or buffer is non-finite: see load_model)."""
    model, ckpt = load_model(checkpoint, device)
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks need input gradients only
    return model, ckpt


def load_test(dataset_npz: str | Path, n_examples: int | None, device: torch.device,
              ckpt: dict[str, Any] | None = None, checkpoint: str | Path | None = None) -> DeviceData:
    """The first ``n_examples`` of the test split (all when None); with ``ckpt``,
    checked to fit the checkpoint's model (class count, image channels)."""
    arrays = load_dataset_npz(dataset_npz)
    if ckpt is not None:
        args, classes, channels = ckpt["model_args"], len(arrays["class_names"]), int(arrays["x_test"].shape[-1])
        if (args["num_classes"], args["in_channels"]) != (classes, channels):
            raise CorruptFileError(checkpoint, f"holds a model for {args['num_classes']} classes and "
                                               f"{args['in_channels']}-channel images, but {dataset_npz} has {classes} "
                                               f"classes and {channels}-channel images",
                                   "evaluate it on the dataset it was trained on")
    return DeviceData.from_numpy(arrays["x_test"], arrays["y_test"], device).head(n_examples)


def check_inputs(x: torch.Tensor, source: str | Path) -> None:
    """Attack and evaluation inputs are finite images in [0, 1] (normalisation is inside the model)."""
    if not x.is_floating_point() or x.numel() == 0:
        return
    if not bool(torch.isfinite(x).all()):
        raise CorruptFileError(source, "holds non-finite input images (NaN or inf)", "re-create it")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise CorruptFileError(source, f"holds input images outside [0, 1] (min {low:.4g}, max {high:.4g}); soften's "
                                       "models take [0, 1] pixels and normalise inside", "re-create it")


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
    """The run a result belongs to, and its whole spec: tables judge from it whether
    a cell is comparable with a paper's (epochs, threat, method parameters)."""
    run = ckpt["spec"]
    return {"dataset": run["dataset"], "noise": run["noise"], "arch": run["arch"], "method": run["method"],
            "seed": run["seed"], "checkpoint": Path(checkpoint).stem, "checkpoint_epoch": ckpt["epoch"],
            "run_spec": {k: v for k, v in run.items() if k not in PLACEMENT_KEYS}}


def provenance(device: torch.device) -> dict[str, Any]:
    """Where and how a result was computed; ``tf32``: whether TF32 was allowed for
    convolutions or matrix products (False after :func:`setup_device`)."""
    tf32 = device.type == "cuda" and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    return {"device": str(device), "torch": str(torch.__version__), "soften": soften.__version__,
            "python": platform.python_version(), "tf32": bool(tf32)}


def prepare_attack(checkpoint: str | Path, dataset_npz: str | Path, spec: dict[str, Any], progress: bool | None):
    """What every attack-running stage starts with: the attack's params (kind
    checked), the seeded device, the eval-mode fp32 model and its checkpoint, the
    test split on the device, the device, and whether to show a progress bar."""
    from soften.evaluation.attacks import ATTACK_KINDS

    params = spec["params"]
    if params["kind"] not in ATTACK_KINDS:
        raise ValueError(f"unknown attack kind {params['kind']!r}; known: {sorted(ATTACK_KINDS)}")
    device = setup_device(spec)
    torch.manual_seed(int(params.get("seed", 0)))
    model, ckpt = load_eval_model(checkpoint, device)
    test = load_test(dataset_npz, spec.get("n_examples"), device, ckpt, checkpoint)
    show = sys.stderr.isatty() if progress is None else progress
    return params, model, ckpt, test, device, show
