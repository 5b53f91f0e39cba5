"""The training options a GPU run uses for speed, usable (and tested) on CPU too.

Four settings under ``training:`` (defaults in soften.pipeline.config.TRAINING_DEFAULTS):

- ``amp``: autocast of the *training* step (attack, forward, loss). ``auto`` is
  bf16 on a CUDA GPU of compute capability 8.0+ (Ampere and newer: bf16 tensor
  cores) and off elsewhere (older GPUs and CPU train in fp32); ``bf16`` asks for
  bf16 on CPU (autocast works, and with bf16 instructions it is faster) or an
  sm_80+ GPU; ``fp16`` is refused, since it needs loss scaling the step does
  not do (bf16 needs none); ``off`` is fp32. Evaluation (per-epoch monitoring and every evaluation stage)
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
  seconds on CPU); it pays off over long GPU runs. A training run needs more
  graphs than Dynamo keeps by default (:data:`RECOMPILE_LIMIT`).
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


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with bf16 tensor cores (compute capability 8.0, Ampere, or newer);
    older GPUs emulate bf16 matmuls slower than fp32."""
    return device.type == "cuda" and tuple(torch.cuda.get_device_capability(device)) >= (8, 0)


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype a training step runs in on ``device`` (None: fp32)."""
    if amp not in AMP_MODES:
        raise ValueError(f"training.amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "fp16":
        # fp16 gradients underflow without loss scaling, which the step (attack gradients,
        # AWP's ascent, the training backward) does not do: refused rather than silently wrong.
        raise ValueError("training.amp: fp16 is refused (it needs loss scaling, which soften does not do); "
                         "use bf16 on an sm_80+ GPU or CPU, or off")
    if amp == "off" or (amp == "auto" and not bf16_native(device)):
        return None
    if device.type == "cuda" and not bf16_native(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise ValueError(f"training.amp: bf16 needs an sm_80+ GPU (Ampere or newer), this one is sm_{major}{minor}; "
                         "use amp: off (or auto)")
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
        allow_training_graphs()
        model.compile(**({} if backend is True else {"backend": backend}))
    return model


#: Graphs one compiled model may keep. A training run calls it in up to 2 BatchNorm modes x 2
#: grad modes x input with/without requires_grad x autocast on/off x static/dynamic batch
#: (the last batch of an epoch is smaller) = 32 states; Dynamo's default of 8 is reached
#: within 2 epochs of SGLR or TRADES (8 graphs, measured on CPU), after which every further
#: state runs uncompiled.
RECOMPILE_LIMIT = 64


def allow_training_graphs() -> None:
    """Raise Dynamo's per-function graph limit to :data:`RECOMPILE_LIMIT` (never lower it)."""
    import torch._dynamo.config as dynamo

    name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
    setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
    dynamo.accumulated_recompile_limit = max(getattr(dynamo, "accumulated_recompile_limit", 0), 4 * RECOMPILE_LIMIT)


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
