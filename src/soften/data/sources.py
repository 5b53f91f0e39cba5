"""Raw dataset sources. Each builder returns a ``RawDataset`` (train + test, uint8 NHWC).

Dataset families: ``digits`` (here), ``cifar10``/``cifar100`` (cifar.py),
``svhn`` (svhn.py), ``tinyimagenet`` (tinyimagenet.py) and ``cifar10-mini``
(mini.py); the fetch stage turns any ``RawDataset`` into the one npz format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class RawDataset:
    """What a builder returns: train and test images (uint8 NHWC) and labels (int64),
    class names, and where the data came from (recorded in the dataset's sidecar)."""

    x_train: np.ndarray  # uint8, N x H x W x C
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: dict[str, Any] = field(default_factory=dict)


def digits(options: dict[str, Any]) -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, no network).

    Pixels are 4-bit (0..16); they are scaled to 0..255 so every dataset shares
    the uint8 convention. The test split is a stratified, seeded 20% hold-out.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    test_fraction = float(options.get("test_fraction", 0.2))
    split_seed = int(options.get("split_seed", 0))
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    import sklearn

    return RawDataset(
        x_tr, y_tr, x_te, y_te, [str(c) for c in bunch.target_names],
        source={"kind": "sklearn.datasets.load_digits", "sklearn_version": sklearn.__version__,
                "test_fraction": test_fraction, "split_seed": split_seed},
    )


def _lazy(module: str, name: str) -> Callable[[dict[str, Any]], RawDataset]:
    """A builder imported on first use (the modules import this one). ``module`` is
    spelled out in full so that soften.pipeline.codedeps counts it as the fetch stage's code."""

    def build(options: dict[str, Any]) -> RawDataset:
        import importlib

        return getattr(importlib.import_module(module), name)(options)

    build.__name__ = name
    build.__qualname__ = name
    build.__doc__ = f"See {module}.{name}."
    return build


BUILDERS: dict[str, Callable[[dict[str, Any]], RawDataset]] = {
    "digits": digits,
    "cifar10": _lazy("soften.data.cifar", "cifar10"),
    "cifar100": _lazy("soften.data.cifar", "cifar100"),
    "svhn": _lazy("soften.data.svhn", "svhn"),
    "tinyimagenet": _lazy("soften.data.tinyimagenet", "tinyimagenet"),
    "cifar10-mini": _lazy("soften.data.mini", "cifar10_mini"),
}
