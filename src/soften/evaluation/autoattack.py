"""AutoAttack (Croce & Hein, ICML 2020) through the reference implementation.

The attack code is Croce & Hein's own, installed from PyPI as ``pyautoattack``
(a refactored packaging of github.com/fra31/auto-attack). Its wrapper API
differs from the GitHub ``autoattack`` package (keyword-only arguments,
``batch_size=`` instead of ``bs=``, always returns ``(x_adv, y_adv)``, no
``verbose``); :func:`autoattack` accepts either package.

What the adapter adds around the package:

- the model runs in eval mode and fp32 (autocast off), and its previous mode is
  restored afterwards; the package itself never calls ``model.eval()``, so a
  BatchNorm model left in train mode would otherwise be attacked in train mode;
- the global RNG is restored afterwards (the package reseeds it per attack);
- the attacks run one at a time on the points still robust, exactly as the
  package's ``run_standard_evaluation`` does internally (each attack reseeds,
  and sees the same points in the same order), so the final per-example flags
  are identical to one call, and the robust count after each attack is known;
- fewer than 10 classes: the targeted attacks use ``classes - 1`` targets;
- resume: with ``state_path``, the progress after each attack (which attacks
  ran, the per-example flags, the adversarial inputs where asked for) is saved
  there, and a call that finds it (for the same inputs and settings) continues
  with the next attack. Each attack reseeds, so a resumed evaluation gives the
  flags an uninterrupted one gives; a WRN-34-10 AutoAttack stopped at a SLURM
  time limit loses at most the attack it was in. The file is removed at the end;
- memory: the batch size is capped at what the GPU's free memory holds for this
  model and input (soften.attacks.memory), and an attack that still runs out
  of memory is retried at half the batch; the result records the batch size used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from soften.attacks import model_mode
from soften.errors import CorruptFileError
from soften.attacks.memory import fit_batch_size, halving_on_oom
from soften.io import load_torch, save_torch

log = logging.getLogger("soften.autoattack")

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")


def backend(prefer: str | None = None) -> tuple[str, Any]:
    """The installed AutoAttack package: ``('pyautoattack', module)`` or ``('autoattack', module)``."""
    names = [prefer] if prefer else ["pyautoattack", "autoattack"]
    for name in names:
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("AutoAttack needs the 'pyautoattack' package (pip install pyautoattack==0.2.0) "
                      "or the GitHub 'autoattack' package (pip install git+https://github.com/fra31/auto-attack)")


def build(model: torch.nn.Module, *, eps: float, norm: str = "Linf", version: str = "standard", seed: int = 0,
          device: str | torch.device = "cpu", package: str | None = None) -> tuple[Any, str]:
    """Construct the package's ``AutoAttack`` object with either wrapper API."""
    name, pkg = backend(package)
    device = str(device)
    if name == "pyautoattack":
        aa = pkg.AutoAttack(model, norm=norm, eps=eps, version=version, seed=seed, device=device)
    else:
        aa = pkg.AutoAttack(model, norm=norm, eps=eps, version=version, seed=seed, device=device, verbose=False)
    return aa, name


def run_package(aa: Any, name: str, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``run_standard_evaluation`` with either wrapper API; returns ``(x_adv, y_adv)``."""
    if name == "pyautoattack":
        return aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return aa.run_standard_evaluation(x, y, bs=batch_size, return_labels=True)


def apply_settings(aa: Any, settings: dict[str, Any] | None) -> None:
    """Set attributes such as ``{"square.n_queries": 1000}`` on the package's attack objects.

    Anything here makes the run non-standard; it is recorded in the result.
    """
    for key, value in (settings or {}).items():
        obj_name, _, attr = key.rpartition(".")
        obj = getattr(aa, obj_name) if obj_name else aa
        if not hasattr(obj, attr):
            raise ValueError(f"AutoAttack setting {key!r}: {type(obj).__name__} has no attribute {attr!r}")
        setattr(obj, attr, value)


def _version_of(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "unknown"


@torch.no_grad()
def _predict(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) if len(x) else \
        torch.zeros(0, dtype=torch.long, device=x.device)


def autoattack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    version: str = "standard",
    n_examples: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    norm: str = "Linf",
    attacks: list[str] | tuple[str, ...] | None = None,
    settings: dict[str, Any] | None = None,
    package: str | None = None,
    progress: bool = False,
    return_adv: bool = False,
    state_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Robust accuracy under AutoAttack on the first ``n_examples`` of ``(x, y)``.

    ``x``: images in [0, 1] (the model normalises internally); ``y``: int64 labels.
    ``attacks``: a subset of the version's attacks (e.g. ``["square"]``), run
    with that version's settings. Returns a dict with ``robust_accuracy``,
    ``robust_mask`` (bool, per example), ``clean_accuracy``, ``clean_mask``,
    ``counts`` (robust examples left after each attack, starting with
    ``clean``), ``seconds`` per attack, ``batch_size`` (the one used, see
    the module docstring), ``resumed_after`` (the attacks a saved state
    held, empty for a fresh run) and, with ``return_adv``, ``x_adv``.
    ``state_path``: where progress is saved after each attack and resumed from.
    """
    if n_examples is not None:
        x, y = x[:n_examples], y[:n_examples]
    x = x.detach().float()
    y = y.detach().long()
    first = next(model.parameters(), None)
    device = first.device if first is not None else x.device
    low = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if low:
        raise ValueError(f"AutoAttack evaluates in fp32, but the model has {low} parameters; call model.float() first")
    x, y = x.to(device), y.to(device)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    start = time.time()
    with model_mode(model, train=False), torch.random.fork_rng(devices=cuda_devices), \
            torch.autocast(device_type=device.type, enabled=False), _quiet_package_logs():
        aa, name = build(model, eps=eps, norm=norm, version=version, seed=seed, device=device, package=package)
        order = list(aa.attacks_to_run)
        if attacks is not None:
            unknown = [a for a in attacks if a not in order]
            if unknown:
                raise ValueError(f"attacks {unknown} are not part of AutoAttack version {version!r} ({order})")
            order = [a for a in order if a in attacks]
        n_classes = int(_predict_logits_width(model, x[:1]))
        if n_classes < 10:
            if any(a in ("apgd-t", "fab-t") for a in order) and n_classes < 4:
                raise ValueError(f"the targeted AutoAttack attacks need at least 4 classes, the model has {n_classes}")
            aa.apgd_targeted.n_target_classes = n_classes - 1
            aa.fab.n_target_classes = n_classes - 1
        apply_settings(aa, settings)
        batch_size = fit_batch_size(model, tuple(x.shape[1:]), device, batch_size, "AutoAttack")
        key = _state_key(x, y, eps=eps, norm=norm, version=version, seed=seed, order=order, settings=settings,
                         package=name)
        saved = _load_state(state_path, key, return_adv)
        if saved is None:
            clean = _predict(model, x, batch_size) == y
            robust, x_adv = clean.clone(), (x.clone() if return_adv else None)
            counts, seconds = {"clean": int(clean.sum())}, {}
        else:
            clean, robust = saved["clean"].to(device), saved["robust"].to(device)
            x_adv = saved["x_adv"].to(device) if return_adv else None
            counts, seconds = saved["counts"], saved["seconds"]
            log.info("AutoAttack resumes from %s after %s", state_path, ", ".join(saved["done"]))
        resumed_after = list(saved["done"]) if saved else []
        for attack in tqdm(order, desc=f"AutoAttack ({version})", disable=not progress):
            if attack in counts:
                continue  # done before the interruption
            t0 = time.time()
            idx = robust.nonzero().squeeze(1)
            if idx.numel():
                aa.attacks_to_run = [attack]
                (adv, y_adv), batch_size = halving_on_oom(lambda b: run_package(aa, name, x[idx], y[idx], b),
                                                          batch_size, f"AutoAttack {attack}")
                robust[idx] = y_adv.to(device) == y[idx]
                if x_adv is not None:
                    x_adv[idx] = adv.to(device)
            counts[attack] = int(robust.sum())
            seconds[attack] = round(time.time() - t0, 3)
            log.info("after %s: %d/%d robust", attack, counts[attack], len(y))
            if state_path is not None:
                _save_state(state_path, key, order, clean, robust, x_adv, counts, seconds)
    n = int(len(y))
    result = {
        "robust_accuracy": counts[order[-1]] / n if order and n else (counts["clean"] / n if n else float("nan")),
        "robust_mask": robust.cpu(),
        "clean_accuracy": counts["clean"] / n if n else float("nan"),
        "clean_mask": clean.cpu(),
        "counts": counts,
        "attacks": order,
        "n": n,
        "eps": eps,
        "norm": norm,
        "version": version,
        "seed": seed,
        "settings": dict(settings or {}),
        "package": f"{name}=={_version_of(name)}",
        "seconds": seconds,
        "total_seconds": round(time.time() - start, 3),
        "batch_size": batch_size,
        "resumed_after": resumed_after,
    }
    if return_adv:
        result["x_adv"] = x_adv
    if state_path is not None:
        Path(state_path).unlink(missing_ok=True)
    return result


def _state_key(x: torch.Tensor, y: torch.Tensor, **settings: Any) -> str:
    """A digest of the inputs and everything that decides the attacks' outcome: a saved state
    continues only the evaluation it was written by."""
    digest = hashlib.sha256(repr(sorted((k, repr(v)) for k, v in settings.items())).encode())
    for t in (x, y):
        digest.update(repr((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_state(path, key: str, order: list[str], clean, robust, x_adv, counts, seconds) -> None:
    state = {"key": key, "done": [a for a in order if a in counts], "clean": clean.cpu(), "robust": robust.cpu(),
             "counts": dict(counts), "seconds": dict(seconds)}
    if x_adv is not None:
        state["x_adv"] = x_adv.cpu()
    save_torch(state, path)  # atomic (a temporary renamed into place): a kill mid-save keeps the previous state


def _load_state(path, key: str, need_adv: bool) -> dict[str, Any] | None:
    """The saved progress of this evaluation, or None (no file, another evaluation's, or unreadable: started afresh)."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = load_torch(path)
    except CorruptFileError as err:
        log.warning("%s %s; AutoAttack starts afresh", path, err.problem)
        return None
    if not isinstance(state, dict) or state.get("key") != key or (need_adv and "x_adv" not in state):
        log.warning("%s holds the progress of another AutoAttack evaluation; starting afresh", path)
        return None
    return state


@torch.no_grad()
def _predict_logits_width(model, x: torch.Tensor) -> int:
    return model(x).shape[1]


@contextlib.contextmanager
def _quiet_package_logs():
    """pyautoattack logs its setup at INFO on every call; keep it at WARNING."""
    logger = logging.getLogger("auto-attack")
    level = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
