"""TinyImageNet-200 from the official CS231n zip (64x64 RGB, 200 classes).

- Classes are ordered as in ``wnids.txt``; class names come from ``words.txt``.
- Train: ``train/<wnid>/images/*.JPEG`` (500 per class).
- Test: the labelled validation set (``val/images``, 50 per class), regrouped
  by ``val/val_annotations.txt``, as ADR (§5.1) and the reference code do; the
  official test split has no labels.
- Grayscale JPEGs are converted to RGB; every image is checked to be 64x64.

``path`` may be the zip or its extracted ``tiny-imagenet-200`` folder; the
zip is read in place, not extracted.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from soften.data.download import obtain
from soften.data.sources import RawDataset

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FILENAME = "tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
SIZE = 64


def _open(path: Path, stack: contextlib.ExitStack) -> tuple[Callable[[str], bytes], list[str]]:
    """``read(relpath)`` and the list of relative file names under the dataset folder."""
    if path.is_dir():
        root = path / FOLDER if (path / FOLDER).is_dir() else path
        names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        return (lambda rel: (root / rel).read_bytes()), names
    try:
        zf = stack.enter_context(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path} is not a readable TinyImageNet zip: {err}") from None
    prefix = FOLDER + "/"
    names = [n[len(prefix):] for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
    return (lambda rel: zf.read(prefix + rel)), names


def _image(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (SIZE, SIZE, 3):
        raise ValueError(f"{name}: expected a {SIZE}x{SIZE} image, got {arr.shape}")
    return arr


def load_tinyimagenet(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The official archive (or its extracted folder) as (x_train, y_train, x_test, y_test,
    class_names): uint8 NHWC 64x64x3 images, int64 labels in ``wnids.txt`` order, the first
    name of each class from ``words.txt`` (else its wnid). The test split is the official
    validation set (the test labels are not public)."""
    with contextlib.ExitStack() as stack:
        read, names = _open(path, stack)
        wnids = read("wnids.txt").decode().split()
        index = {w: i for i, w in enumerate(wnids)}
        words = {}
        if "words.txt" in names:
            for line in read("words.txt").decode().splitlines():
                if "\t" in line:
                    wnid, text = line.split("\t", 1)
                    words[wnid] = text.split(",")[0].strip()
        train = sorted(n for n in names if n.startswith("train/") and n.lower().endswith(".jpeg"))
        x_train = np.stack([_image(read(n), n) for n in train]) if train else np.zeros((0, SIZE, SIZE, 3), np.uint8)
        y_train = np.array([index[PurePosixPath(n).parts[1]] for n in train], dtype=np.int64)
        val = []
        for line in read("val/val_annotations.txt").decode().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2:
                val.append((fields[0], index[fields[1]]))
        val.sort()
        x_test = np.stack([_image(read(f"val/images/{f}"), f) for f, _ in val]) if val else np.zeros((0, SIZE, SIZE, 3), np.uint8)
        y_test = np.array([c for _, c in val], dtype=np.int64)
    return x_train, y_train, x_test, y_test, [words.get(w, w) for w in wnids]


def tinyimagenet(options: dict[str, Any]) -> RawDataset:
    """TinyImageNet-200: 100,000 train / 10,000 labelled validation images used as test."""
    path = obtain(options, filename=FILENAME, url=URL, md5=MD5)
    x_train, y_train, x_test, y_test, names = load_tinyimagenet(path)
    return RawDataset(
        x_train, y_train, x_test, y_test, names,
        source={"kind": "tinyimagenet", "url": options.get("url", URL), "md5": options.get("md5", MD5),
                "path": str(path), "test_split": "official validation set (val_annotations.txt)",
                "citation": "Le and Yang, Tiny ImageNet Visual Recognition Challenge, 2015"},
    )
