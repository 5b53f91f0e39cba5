"""Label-noise injection on training labels.

Two standard noise models from the noisy-label literature:

- ``symmetric``: exactly ``round(rate * n)`` labels, chosen uniformly without
  replacement, each moved to a uniformly chosen *different* class. The realised
  noise rate is therefore exactly ``rate`` (up to rounding).
- ``uniform``: each label is resampled from all ``num_classes`` classes with
  probability ``rate``; it may land on its own class, so the realised flip rate
  is about ``rate * (K - 1) / K``.
"""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("none", "symmetric", "uniform")


def inject_label_noise(
    labels: np.ndarray, num_classes: int, kind: str, rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy_labels, flipped_mask)``; deterministic in ``seed``."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown label-noise kind {kind!r}; expected one of {NOISE_KINDS}")
    if not (0.0 <= float(rate) < 1.0):
        raise ValueError(f"label-noise rate must be in [0, 1), got {rate!r}")
    if kind == "none" and rate != 0:
        raise ValueError(f"label-noise kind 'none' needs rate 0, got {rate!r}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")

    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    n = labels.size
    if kind == "symmetric":
        idx = rng.choice(n, size=int(round(rate * n)), replace=False)
        # An offset in 1..K-1 added modulo K is uniform over the other classes.
        offset = rng.integers(1, num_classes, size=idx.size)
        noisy[idx] = (labels[idx] + offset) % num_classes
    elif kind == "uniform":
        resample = rng.random(n) < rate
        noisy[resample] = rng.integers(0, num_classes, size=int(resample.sum()))
    return noisy, noisy != labels


def noise_name(kind: str, rate: float) -> str:
    """The path component for a noise setting: ``none`` or e.g. ``symmetric-0.4``."""
    return "none" if kind == "none" else f"{kind}-{float(rate):g}"


def parse_noise_name(name: str) -> tuple[str, float]:
    if name == "none":
        return "none", 0.0
    kind, sep, rate = name.partition("-")
    if not sep or kind not in NOISE_KINDS:
        raise ValueError(f"bad noise name {name!r}; expected 'none' or KIND-RATE such as 'symmetric-0.4'")
    return kind, float(rate)
