"""SVHN cropped digits (Netzer et al. 2011), the ``train`` and ``test`` .mat files.

Default URLs and md5s are torchvision's (``torchvision/datasets/svhn.py``).
Options: ``url`` and ``md5`` may be mappings ``{train: ..., test: ...}`` to
override either file; ``path`` is a folder holding ``train_32x32.mat`` and
``test_32x32.mat``. Label 10 in the files means digit 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soften.data.download import obtain
from soften.data.sources import RawDataset

BASE_URL = "http://ufldl.stanford.edu/housenumbers"
FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
}


def _split_options(options: dict[str, Any], split: str) -> dict[str, Any]:
    out = {k: v for k, v in options.items() if k in ("download_dir",)}
    for key in ("url", "md5"):
        value = options.get(key)
        if isinstance(value, dict) and split in value:
            out[key] = value[split]
        elif key == "md5" and key in options and value is None:
            out[key] = None  # md5: null skips the check, as for every dataset
        elif value is not None and not isinstance(value, dict):
            raise ValueError(f"svhn option {key!r} must map split names (train, test) to values, got {value!r}")
    if options.get("path"):
        folder = Path(options["path"]).expanduser()
        out["path"] = str(folder / FILES[split][0])
    return out


def load_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN ``.mat`` split: uint8 NHWC images and int64 labels, label 10 (digit 0) mapped to 0."""
    from scipy.io import loadmat

    mat = loadmat(path)
    x = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2))  # HWCN -> NHWC
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    y[y == 10] = 0
    return x, y


def svhn(options: dict[str, Any]) -> RawDataset:
    """SVHN: 73,257 train / 26,032 test 32x32 RGB digit crops (the 'extra' split is not used)."""
    arrays, paths = {}, {}
    for split, (filename, md5) in FILES.items():
        path = obtain(_split_options(options, split), filename=filename, url=f"{BASE_URL}/{filename}", md5=md5)
        arrays[split] = load_mat(path)
        paths[split] = str(path)
    return RawDataset(
        *arrays["train"], *arrays["test"], [str(i) for i in range(10)],
        source={"kind": "svhn", "files": paths,
                "citation": "Netzer et al., Reading Digits in Natural Images with Unsupervised Feature Learning, 2011"},
    )
