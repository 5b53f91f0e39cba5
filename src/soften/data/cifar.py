"""CIFAR-10 and CIFAR-100 from the official Python archives (Krizhevsky 2009).

Default URLs and md5s are torchvision's (``torchvision/datasets/cifar.py``).
The archive (or an extracted ``cifar-10-batches-py`` / ``cifar-100-python``
folder given as ``path``) is read in place: batch pickles are loaded straight
from the tar members, with an unpickler that admits only the numpy array
constructors those files use, so a tampered archive cannot run code.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from soften.data.download import obtain
from soften.data.sources import RawDataset

CIFAR10 = {
    "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "md5": "c58f30108f718f92721af3b95e74349a",
    "filename": "cifar-10-python.tar.gz",
    "folder": "cifar-10-batches-py",
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
    "meta": "batches.meta",
    "label_key": "labels",
    "names_key": "label_names",
}
CIFAR100 = {
    "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "md5": "eb9058c3a382ffc7106e4002c42a8d85",
    "filename": "cifar-100-python.tar.gz",
    "folder": "cifar-100-python",
    "train": ["train"],
    "test": ["test"],
    "meta": "meta",
    "label_key": "fine_labels",
    "names_key": "fine_label_names",
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        """Only numpy's array-reconstruction globals; anything else is refused."""
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _load_pickle(data: bytes) -> dict[str, Any]:
    # The official files are Python-2 pickles; 'bytes' keeps str fields as bytes.
    obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _reader(path: Path, folder: str, stack: contextlib.ExitStack) -> Callable[[str], bytes]:
    """Return ``read(member) -> bytes`` for an archive file or an extracted folder."""
    if path.is_dir():
        root = path / folder if (path / folder).is_dir() else path

        def read_dir(name: str) -> bytes:
            f = root / name
            if not f.is_file():
                raise FileNotFoundError(f"{f} not found (expected the extracted {folder} folder)")
            return f.read_bytes()

        return read_dir
    try:
        tar = stack.enter_context(tarfile.open(path, "r:*"))
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable CIFAR tar archive: {err}") from None

    def read_tar(name: str) -> bytes:
        m = members.get(f"{folder}/{name}")
        if m is None:
            raise ValueError(f"{path} has no member {folder}/{name}")
        return tar.extractfile(m).read()

    return read_tar


def _decode_batches(read, names: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        entry = _load_pickle(read(name))
        data = np.asarray(entry["data"], dtype=np.uint8)
        # Rows are 3072 bytes: the 1024 red, then green, then blue values, each 32x32 row-major.
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def load_cifar(spec: dict[str, Any], options: dict[str, Any], name: str) -> RawDataset:
    """CIFAR-10/100 from the official python archive (downloaded and md5-checked, or
    ``options['path']``: the archive or its extracted folder); ``spec`` is :data:`CIFAR10`
    or :data:`CIFAR100`. Images uint8 NHWC 32x32x3, labels int64."""
    path = obtain(options, filename=spec["filename"], url=spec["url"], md5=spec["md5"])
    with contextlib.ExitStack() as stack:
        read = _reader(path, spec["folder"], stack)
        x_train, y_train = _decode_batches(read, spec["train"], spec["label_key"])
        x_test, y_test = _decode_batches(read, spec["test"], spec["label_key"])
        meta = _load_pickle(read(spec["meta"]))
    class_names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta[spec["names_key"]]]
    return RawDataset(
        x_train, y_train, x_test, y_test, class_names,
        source={"kind": name, "url": options.get("url", spec["url"]), "md5": options.get("md5", spec["md5"]),
                "path": str(path), "citation": "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009"},
    )


def cifar10(options: dict[str, Any]) -> RawDataset:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 RGB images, 10 classes."""
    return load_cifar(CIFAR10, options, "cifar10")


def cifar100(options: dict[str, Any]) -> RawDataset:
    """CIFAR-100 with its 100 fine labels: 50,000 train / 10,000 test images."""
    return load_cifar(CIFAR100, options, "cifar100")
