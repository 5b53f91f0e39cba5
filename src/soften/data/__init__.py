"""Datasets: fetch to one npz format, load onto the training device, augment there.

Names load on first use, so that config validation (which reads the builder names
in :mod:`soften.data.sources`) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"DATASET_BUILDERS": "fetch", "fetch_dataset": "fetch", "load_dataset_npz": "fetch",
            "DeviceData": "device_data", "augment_batch": "device_data"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"soften.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'soften.data' has no attribute {name!r}")
