"""BatchNorm bookkeeping for forward passes that must not change the model.

Several methods need an extra forward pass whose only purpose is to read the
model's predictions (SGLR's clean predictions, TE's bank update, AWP's ascent
step). In train mode such a pass would also move BatchNorm running statistics;
:func:`preserve_bn_stats` snapshots and restores them so the pass is invisible
to later evaluation, and :func:`clean_forward` picks one of three policies.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from soften.attacks import model_mode

#: How an extra (prediction-only) forward pass treats BatchNorm:
#: - ``batch``: train-mode batch statistics, running statistics left untouched;
#: - ``eval``: eval mode (running statistics are used, nothing is updated);
#: - ``update``: a plain train-mode forward that also updates the running statistics.
CLEAN_BN_MODES = ("batch", "eval", "update")


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def preserve_bn_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with every BN buffer (running mean/var, batch count) swapped for
    a scratch copy, then put the original tensors back.

    The originals are never written to, so they stay bit for bit as they were,
    and an autograd graph built before the body (which may have saved them)
    stays valid: restoring by in-place copy would bump their version counters.
    """
    saved = []
    for m in _bn_modules(model):
        originals = {k: v for k, v in m.named_buffers(recurse=False) if v is not None}
        saved.append((m, originals))
        for k, v in originals.items():
            setattr(m, k, v.clone())
    try:
        yield model
    finally:
        for m, originals in saved:
            for k, v in originals.items():
                setattr(m, k, v)


@contextlib.contextmanager
def batch_stats_only(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with every BN layer normalising by batch statistics and writing
    nothing: ``track_running_stats`` off hands BatchNorm no running buffers, so the
    forward neither reads nor updates them (nor the batch counter). The same outputs
    as :func:`preserve_bn_stats` in train mode, without copying and updating scratch
    buffers (a measurable share of a small model's extra forward on CPU)."""
    layers = [(m, m.track_running_stats) for m in _bn_modules(model)]
    for m, _ in layers:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m, tracked in layers:
            m.track_running_stats = tracked


@torch.no_grad()
def clean_forward(model: nn.Module, x: torch.Tensor, bn: str) -> torch.Tensor:
    """Logits of ``model`` on ``x`` without gradient, under BN policy ``bn`` (see CLEAN_BN_MODES)."""
    if bn == "eval":
        with model_mode(model, train=False):
            return model(x).float()
    if bn == "batch":
        with model_mode(model, train=True), batch_stats_only(model):
            return model(x).float()
    if bn == "update":
        with model_mode(model, train=True):
            return model(x).float()
    raise ValueError(f"unknown clean_bn mode {bn!r}; known: {CLEAN_BN_MODES}")
