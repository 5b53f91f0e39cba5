"""Small-data fixtures for the method tests (kept apart from the suite's conftest)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from soften.pipeline.config import resolve_run, validate_config
from soften.data import fetch_dataset, load_dataset_npz
from soften.io import save_npz

#: Every method the train test runs (teachers first: kd-* need standard and pgd-at).
ALL_METHODS = [
    "standard", "pgd-at", "trades",
    "pgd-at+ls", "pgd-at+te", "pgd-at+sglr", "trades+sglr", "pgd-at+sgls",
    "pgd-at+adr", "trades+adr", "pgd-at+awp", "pgd-at+adr+awp", "pgd-at+wa", "trades+adr+awp+wa",
    "kd-at", "kd-swa",
]


def tiny_config(results_dir: str | Path, resources_dir: str | Path, *, methods=("pgd-at",), epochs: int = 2) -> dict[str, Any]:
    """Digits, shortened so that every stateful component is active within 2 epochs."""
    cfg = {
        "results_dir": str(results_dir),
        "resources_dir": str(resources_dir),
        "device": "cpu",
        "threads": 1,
        "experiments": {"main": {"datasets": ["digits"], "noise": ["none"], "archs": ["cnn"], "methods": list(methods),
                                 "seeds": [0], "attacks": ["natural"]}},
        "datasets": {
            "digits": {
                "source": "digits",
                "val_size": 144,
                "options": {"test_fraction": 0.2, "split_seed": 0},
                "threat": {"eps": 0.1, "alpha": 0.025, "steps": 3},
                "training": {"epochs": epochs, "lr_milestones": [10], "batch_size": 64, "test_subset": 64,
                             "val_attack_steps": 2},
            }
        },
        "methods": {
            "te": {"start_epoch": 1, "ramp_end_epoch": 2},
            "sgls": {"start_epoch": 1},
            "adr": {"ema_decay": 0.9},
            "wa": {"decay": 0.9},
            "swa": {"start_epoch": 1},
        },
    }
    return validate_config(cfg)


def make_small_digits(resources_dir: str | Path, n_train: int = 384, n_val: int = 64, n_test: int = 64) -> tuple[Path, Path]:
    """A reduced digits npz (first n of each split) and its 'none' noise file."""
    resources_dir = Path(resources_dir)
    full = resources_dir / "full-digits.npz"
    if not full.exists():
        fetch_dataset("digits", {"test_fraction": 0.2, "split_seed": 0, "val_size": 144, "val_seed": 0}, full)
    arrays = load_dataset_npz(full)
    small = dict(arrays)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        small[f"x_{split}"] = arrays[f"x_{split}"][:n]
        small[f"y_{split}"] = arrays[f"y_{split}"][:n]
    npz = resources_dir / "datasets" / "digits.npz"
    noise = resources_dir / "noise" / "digits" / "none.npz"
    save_npz(npz, **small)
    save_npz(noise, y_train_noisy=small["y_train"], flipped=np.zeros(n_train, dtype=bool))
    return npz, noise


def run_spec(cfg: dict[str, Any], method: str, seed: int = 0) -> dict[str, Any]:
    spec = resolve_run(cfg, "digits", "none", "cnn", method, seed)
    spec["device"] = "cpu"
    return copy.deepcopy(spec)


def weights(path) -> dict:
    """The model weights of a soften checkpoint file."""
    from soften.io import load_torch

    return load_torch(path)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    """Two state dicts hold bit-identical tensors under the same names."""
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
