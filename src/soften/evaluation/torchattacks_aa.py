"""AutoAttack as ADR's code ran it: torchattacks 3.3.0 (``version: torchattacks-3.3``).

ADR's ``src/robust_eval.py`` (github.com/yuyuwu5/ADR, requirements.txt pins
torchattacks==3.3.0) builds ``torchattacks.AutoAttack(model, eps=8/255,
n_classes=n_class, seed=seed)`` and calls it batch by batch on the test loader,
in eval mode; a point is robust when the model still classifies the returned
image correctly. torchattacks' "standard" version is not the reference one: its
APGD-CE, APGD-T and FAB-T run their defaults of 10 iterations (reference: 100),
APGD-T and FAB-T target ``n_classes - 1`` classes (reference: 9), Square runs
5,000 queries. This module calls that package the same way; the only additions
are the ones every soften evaluation makes: eval mode and fp32 (autocast off),
the model's previous mode and the global RNG restored afterwards (torchattacks
reseeds it). Images are in [0, 1]; normalisation is inside the model.

``settings`` ({"apgd.steps": 2, "fab.n_target_classes": 1}, the smoke scale's cut)
set attributes on the four attack objects, named ``apgd``, ``apgd_targeted``,
``fab`` and ``square``; they make the run non-standard and are recorded.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from soften.attacks import model_mode

#: The four attacks of torchattacks' standard AutoAttack, in its order.
ATTACK_NAMES = ("apgd", "apgd_targeted", "fab", "square")
PACKAGE = "torchattacks"


def _version() -> str:
    from importlib.metadata import version

    return version(PACKAGE)


def build(model: torch.nn.Module, *, eps: float, n_classes: int, seed: int, norm: str = "Linf",
          settings: dict[str, Any] | None = None):
    """``torchattacks.AutoAttack(version="standard")`` as robust_eval.py builds it, with ``settings`` applied."""
    import torchattacks

    aa = torchattacks.AutoAttack(model, norm=norm, eps=eps, version="standard", n_classes=n_classes, seed=seed)
    parts = dict(zip(ATTACK_NAMES, aa._autoattack.attacks))
    for key, value in (settings or {}).items():
        name, _, attr = key.partition(".")
        if name not in parts or not hasattr(parts[name], attr):
            raise ValueError(f"torchattacks AutoAttack setting {key!r}: expected one of "
                             f"{', '.join(ATTACK_NAMES)} and an attribute it has")
        setattr(parts[name], attr, value)
    return aa


def autoattack_torchattacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int = 0,
                            batch_size: int = 500, norm: str = "Linf",
                            settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Robust accuracy under torchattacks 3.3.0's standard AutoAttack, batch by batch.

    Returns ``robust_mask`` and ``clean_mask`` (bool per example), ``robust_accuracy``,
    ``clean_accuracy``, ``n``, ``package``, ``settings`` and ``seconds``."""
    x, y = x.detach().float(), y.detach().long()
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    start = time.time()
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    clean, robust = [], []
    with model_mode(model, train=False), torch.random.fork_rng(devices=cuda_devices), \
            torch.autocast(device_type=device.type, enabled=False):
        with torch.no_grad():
            n_classes = int(model(x[:1]).shape[1])
        aa = build(model, eps=eps, n_classes=n_classes, seed=seed, norm=norm, settings=settings)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            with torch.no_grad():
                clean.append(model(xb).argmax(1) == yb)
            adv = aa(xb, yb)
            with torch.no_grad():
                robust.append(model(adv).argmax(1) == yb)
    empty = torch.zeros(0, dtype=torch.bool, device=device)
    robust_mask = torch.cat(robust) if robust else empty
    clean_mask = torch.cat(clean) if clean else empty
    n = len(y)
    return {
        "robust_accuracy": robust_mask.float().mean().item() if n else float("nan"),
        "robust_mask": robust_mask.cpu(),
        "clean_accuracy": clean_mask.float().mean().item() if n else float("nan"),
        "clean_mask": clean_mask.cpu(),
        "n": n,
        "version": "torchattacks-3.3",
        "seed": seed,
        "settings": dict(settings or {}),
        "package": f"{PACKAGE}=={_version()}",
        "seconds": round(time.time() - start, 3),
    }
