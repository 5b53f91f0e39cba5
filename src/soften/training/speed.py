"""The training options a GPU run uses for speed, usable (and tested) on CPU too.

Four settings under ``training:`` (defaults in soften.config.TRAINING_DEFAULTS):

- ``amp``: autocast of the *training* step (attack, forward, loss). ``auto`` is
  bf16 on CUDA and off elsewhere; ``bf16`` asks for bf16 on any device (CPU
  autocast works, and on a CPU with bf16 instructions it is faster); ``fp16``
  is CUDA only and runs without loss scaling (bf16 needs none: prefer it);
  ``off`` is fp32. Evaluation (per-epoch monitoring and every evaluation stage)
  never runs under autocast: the loop calls it outside this context and the
  evaluation stages load the model in fp32 (soften.evaluation.common).
- ``channels_last``: NHWC memory format for the weights and every 4-D input;
  the same arithmetic in a layout the GPU's tensor cores (and oneDNN on CPU)
  prefer. Numbers change only by floating-point summation order.
- ``compile``: ``nn.Module.compile()`` (torch.compile in place, so parameter
  names, checkpoints and weight averages are unchanged). ``true`` uses
  PyTorch's default backend (inductor); a string names another torch.compile
  backend (``aot_eager`` traces the graphs without generating code: a quick
  check that a model compiles). The first steps pay the compilation (tens of
  seconds on CPU); it pays off over long GPU runs.
- ``optimizer_kernel``: how SGD updates the weights. ``auto`` is ``fused`` on
  CUDA (one kernel for all parameters) and PyTorch's own default elsewhere
  (a per-parameter loop on CPU, so CPU runs stay bit-identical to earlier
  soften versions); ``loop``, ``foreach`` and ``fused`` force one.

channels_last, compile and the SGD kernels change no value beyond floating-point
summation order (tests/test_precision.py compares one step and three steps with the
eager fp32 step); bf16 does, and the paper files train in fp32 (``amp: off``).

The training loop calls :func:`prepare_model` once after building the model,
:func:`optimizer_options` for the SGD keyword arguments, and wraps each step
in :func:`autocast_context`.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
from torch import nn

AMP_MODES = ("auto", "off", "bf16", "fp16")
OPTIMIZER_KERNELS = ("auto", "loop", "foreach", "fused")


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype a training step runs in on ``device`` (None: fp32)."""
    if amp not in AMP_MODES:
        raise ValueError(f"training.amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("training.amp: fp16 autocast needs a CUDA device (use bf16 on CPU)")
        return torch.float16
    return torch.bfloat16


def precision(device: torch.device, amp: str) -> str:
    """The precision a training step actually runs in on ``device``: ``fp32``, ``bf16`` or
    ``fp16`` (``amp: auto`` resolves here, by device). Recorded in the run's checkpoints,
    so that tables can tell a bf16 run from the papers' fp32 ones."""
    dtype = autocast_dtype(device, amp)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast_context(device: torch.device, amp: str):
    """The context one training step runs in (see the module docstring)."""
    dtype = autocast_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4 else a
                 for a in args)


def prepare_model(model: nn.Module, training: dict[str, Any]) -> nn.Module:
    """Apply ``channels_last`` and ``compile`` to ``model`` in place; returns it.

    Call before anything copies the model (EMA teachers, weight averages), so
    the copies share its layout.
    """
    if training.get("channels_last", False):
        model.to(memory_format=torch.channels_last)
        # Inputs arrive NCHW from the data pipeline; convert at the model's door
        # (autograd carries input gradients back through the conversion).
        model.register_forward_pre_hook(_to_channels_last)
    backend = training.get("compile", False)
    if backend:
        model.compile(**({} if backend is True else {"backend": backend}))
    return model


def _supports(option: str) -> bool:
    return option in inspect.signature(torch.optim.SGD).parameters


def optimizer_options(device: torch.device, training: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``torch.optim.SGD`` selecting the update kernel."""
    kernel = training.get("optimizer_kernel", "auto")
    if kernel not in OPTIMIZER_KERNELS:
        raise ValueError(f"training.optimizer_kernel must be one of {OPTIMIZER_KERNELS}, got {kernel!r}")
    if kernel == "auto":
        kernel = "fused" if device.type == "cuda" and _supports("fused") else "default"
    if kernel == "default":
        return {}
    if kernel == "loop":
        return {"foreach": False}
    if kernel == "foreach":
        return {"foreach": True}
    if not _supports("fused"):
        raise ValueError(f"training.optimizer_kernel: fused SGD needs a newer PyTorch than {torch.__version__}")
    return {"fused": True}
