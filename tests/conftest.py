"""Shared fixtures: the digits dataset fetched once, and tiny run specs."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    from soften.data import fetch_dataset

    out = tmp_path_factory.mktemp("datasets") / "digits.npz"
    fetch_dataset("digits", {"val_size": 144, "val_seed": 0, "test_fraction": 0.2, "split_seed": 0}, out)
    return out


@pytest.fixture()
def tiny_spec(digits_npz, tmp_path):
    """A run spec for a fast digits run: a 400-image training subset, 3 epochs."""

    from soften.data import load_dataset_npz
    from soften.io import save_npz
    from soften.stages import noise as make_noise

    arrays = load_dataset_npz(digits_npz)
    small = dict(arrays)
    small["x_train"], small["y_train"] = arrays["x_train"][:400], arrays["y_train"][:400]
    small["x_val"], small["y_val"] = arrays["x_val"][:64], arrays["y_val"][:64]
    small["x_test"], small["y_test"] = arrays["x_test"][:64], arrays["y_test"][:64]
    npz = tmp_path / "digits-small.npz"
    save_npz(npz, **small)
    noise = tmp_path / "none.npz"
    make_noise(npz, "none", 0, noise)

    def make(method="pgd-at", **training):
        from soften.config import TRAINING_DEFAULTS

        return {
            "dataset": "digits", "noise": "none", "arch": "cnn", "method": method, "seed": 0,
            "dataset_npz": str(npz), "noise_npz": str(noise), "device": "cpu", "threads": 1,
            "training": {**TRAINING_DEFAULTS, "epochs": 3, "batch_size": 64, "lr_milestones": [2],
                         "test_subset": None, "val_attack_steps": 3, **training},
            "threat": {"eps": 0.1, "alpha": 0.05, "steps": 3},
            "augment": {"crop_padding": 0, "flip": False},
            "method_params": {},
        }

    return make


@pytest.fixture()
def subprocess_env():
    """Environment for subprocesses: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = PYTHON_BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_config(path: Path, base: dict, **updates) -> Path:
    """``base`` with ``updates`` merged over it (soften's merge: ``{}`` empties a key, ``None`` drops it)."""
    from soften.config import merge

    cfg = merge(copy.deepcopy(base), updates)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
