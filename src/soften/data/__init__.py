"""Datasets: fetch to one npz format, load onto the training device, augment there.

Names load on first use, so that config validation (which reads the builder names
in :mod:`soften.data.sources`) does not import torch.
"""

from __future__ import annotations

import importlib

# Modules spelled out in full: soften.pipeline.codedeps counts them as the code of every job that imports soften.data.
_EXPORTS = {"DATASET_BUILDERS": "soften.data.fetch", "fetch_dataset": "soften.data.fetch",
            "load_dataset_npz": "soften.data.fetch", "DeviceData": "soften.data.device_data",
            "augment_batch": "soften.data.device_data"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """``soften.data.NAME`` for the names of ``__all__``, imported from their module on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'soften.data' has no attribute {name!r}")
