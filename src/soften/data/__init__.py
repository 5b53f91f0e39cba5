"""Datasets: fetch to one npz format, load onto the training device, augment there.

Names load on first use, so that config validation (which reads the builder names
in :mod:`soften.data.sources`) does not import torch.

Part of the research library: every dataset source, the npz format, the device-side
batches, and label noise (``noise``: the noisy-label grammar and its injection; the
pipeline's layout and the reports read its name grammar, so it imports numpy only).

May import: the floor (``io``, ``errors``, ``devices``).
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
