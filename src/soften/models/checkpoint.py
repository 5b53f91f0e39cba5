"""Checkpoint contents. All are plain tensors, dicts, lists and numbers, so they
load with ``torch.load(..., weights_only=True)``. A model checkpoint is only
written, and only loaded, when every parameter and buffer is finite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch

from soften.errors import CorruptFileError
from soften.io import load_torch, save_torch
from soften.models import build_model

FORMAT = "soften-model-v1"


def first_non_finite(obj: Any, prefix: str = "") -> str | None:
    """The name of the first floating-point tensor holding NaN or inf in ``obj`` (a
    tensor, or dicts and lists of them, e.g. a state dict or a whole checkpoint),
    as a ``/``-joined path of keys; None when every tensor is finite."""
    if isinstance(obj, torch.Tensor):
        finite = not obj.is_floating_point() or bool(torch.isfinite(obj).all())
        return None if finite else (prefix or "tensor")
    if isinstance(obj, dict):
        items: Iterable = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        bad = first_non_finite(value, f"{prefix}/{key}" if prefix else str(key))
        if bad is not None:
            return bad
    return None


def model_checkpoint(state_dict: dict[str, torch.Tensor], *, spec: dict[str, Any], model_args: dict[str, Any], epoch: int,
                     metrics: dict[str, Any], dataset_sha256: str | None = None) -> dict[str, Any]:
    """The content of ``best.pt``/``final.pt``: the weights (on CPU), how to rebuild the
    model (``model_args``: arch, num_classes, in_channels, and width_factor where it is not
    1), the run's spec, the epoch
    (counted from 1), its metrics (accuracies as fractions in [0, 1]) and the sha256 of
    the dataset it was trained on."""
    out = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in state_dict.items()},
        "model_args": model_args,
        "spec": spec,
        "epoch": epoch,
        "metrics": metrics,
    }
    if dataset_sha256 is not None:
        out["dataset_sha256"] = dataset_sha256  # transfer evaluation checks source and target share the data
    return out


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a ``best.pt``/``final.pt`` checkpoint (eval mode).

    Refuses (``CorruptFileError`` naming the file) anything that is not a soften
    model checkpoint, one whose tensors do not fit its architecture, and one
    holding a non-finite parameter or buffer.
    """
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or not isinstance(ckpt.get("model"), dict):
        raise CorruptFileError(path, "is not a soften model checkpoint (best.pt or final.pt of a train run)",
                               "give a checkpoint written by `python -m soften train`")
    bad = first_non_finite(ckpt["model"])
    if bad is not None:
        raise CorruptFileError(path, f"holds non-finite values (NaN or inf) in tensor {bad!r} of epoch "
                                     f"{ckpt.get('epoch')}: the run diverged", "retrain it with a lower learning rate")
    try:
        args = ckpt["model_args"]
        channels = args["in_channels"]
        model = build_model(args["arch"], num_classes=args["num_classes"], in_channels=channels,
                            mean=[0.0] * channels, std=[1.0] * channels, width_factor=args.get("width_factor", 1.0))
        model.load_state_dict(ckpt["model"])  # restores the normalisation buffers too
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise CorruptFileError(path, f"does not hold a complete model of its architecture ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0][:120]})",
                               "retrain it (it may come from another soften version)") from None
    return model.to(device).eval(), ckpt


def rng_state(device: torch.device | str | None = None) -> dict[str, Any]:
    """The global torch RNG state and, on a CUDA ``device``, that one GPU's generator, for the resume state.

    Only the job's own GPU: a run resumed where fewer GPUs are visible (or on another one)
    restores this stream onto whichever GPU it then holds (:func:`set_rng_state`)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | str | None = None) -> None:
    """Restore what :func:`rng_state` returned; the CUDA stream goes to ``device`` when it is a GPU.

    A state saved by earlier soften versions holds every visible GPU's generator (a list) and
    not which one the job drew from: the entry of this GPU's index continues here where the
    list has one, else the first."""
    torch.set_rng_state(state["torch"])
    device = torch.device(device) if device is not None else None
    saved = state.get("cuda")
    if saved is None or device is None or device.type != "cuda":
        return
    if isinstance(saved, (list, tuple)):
        if not saved:
            return
        index = device.index if device.index is not None else torch.cuda.current_device()
        saved = saved[index] if index < len(saved) else saved[0]
    torch.cuda.set_rng_state(saved, device)


__all__ = ["model_checkpoint", "load_model", "first_non_finite", "rng_state", "set_rng_state", "save_torch", "load_torch"]
