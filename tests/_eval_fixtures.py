"""Helpers shared by the dataset and evaluation tests (kept out of conftest.py,
which belongs to the foundation tests). Test modules import what they use."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = (REPO_ROOT / "../shared/data/cifar10-jpeg-subset-10k-2k.npz").resolve()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded, and 2 cores are shared; import
    this into a test module to make it autouse there."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def shared_npz_or_skip() -> Path:
    """The shared CIFAR-10 subset; missing is a skip on a laptop but a failure in
    CI, where ../shared sits beside the clone and the offline CIFAR test must run."""
    if not SHARED_NPZ.is_file():
        message = f"offline CIFAR-10 subset not found at {SHARED_NPZ} (../shared/data relative to the repo root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_NPZ


# ------------------------------------------------------------ official CIFAR layout

class _Py2Pickler(pickle._Pickler):
    """Writes pickles like the official Python-2 cPickle files: byte strings as
    py2 ``str`` opcodes and numpy globals under ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "")
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core")
            self.write(pickle.GLOBAL + module.encode() + b"\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _rows(x_nhwc: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> the official N x 3072 rows (1024 R, 1024 G, 1024 B, each row-major)."""
    return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), 3072))


def write_cifar10_archive(path: Path, x_train, y_train, x_test, y_test, class_names) -> str:
    """Write ``cifar-10-python.tar.gz`` in the official layout (members in the
    official order); deterministic bytes. Returns the md5."""
    batches = np.array_split(np.arange(len(x_train)), 5)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(folder)

        def batch(idx, x, y, label):
            return py2_pickle({
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in y[idx]],
                b"data": _rows(x[idx]),
                b"filenames": [f"img_{i:05d}.png".encode() for i in idx],
            })

        files = {f"data_batch_{i + 1}": batch(b, x_train, y_train, f"training batch {i + 1} of 5") for i, b in enumerate(batches)}
        files["test_batch"] = batch(np.arange(len(x_test)), x_test, y_test, "testing batch 1 of 1")
        files["batches.meta"] = py2_pickle({b"num_cases_per_batch": len(batches[0]),
                                            b"label_names": [str(n).encode() for n in class_names], b"num_vis": 3072})
        files["readme.html"] = b"<html><body>CIFAR-10 test archive</body></html>\n"
        for name in ["data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta",
                     "data_batch_2", "data_batch_5", "data_batch_1"]:
            _tar_add(tar, f"cifar-10-batches-py/{name}", files[name])
    return hashlib.md5(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (random port); yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ------------------------------------------------------------ tiny models

def tiny_linear_model(in_features: int = 3 * 8 * 8, classes: int = 10, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, classes)).eval()


def tiny_cnn(channels: int = 1, classes: int = 10, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, classes),
    ).eval()


#: CIFAR-100's fine -> coarse label map as published with the dataset (also in torchvision issues
#: and ryanchankh/cifar100coarse); the fine label names are the 100 classes in alphabetical order.
CIFAR100_COARSE = [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
                   0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18,
                   17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5,
                   8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13]


def cifar100_fine_names() -> list[str]:
    from soften.data.noise import CIFAR100_SUPERCLASSES

    return sorted(n for group in CIFAR100_SUPERCLASSES.values() for n in group)


def write_cifar100_archive(path: Path, x_train, y_train, x_test, y_test) -> str:
    """``cifar-100-python.tar.gz`` in the official layout (train, test, meta; fine and
    coarse labels, the real label names)."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        folder = tarfile.TarInfo("cifar-100-python")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(folder)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            _tar_add(tar, f"cifar-100-python/{name}", py2_pickle({
                b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(y))],
                b"batch_label": f"{name}ing batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in y],
                b"coarse_labels": [CIFAR100_COARSE[int(v)] for v in y],
                b"data": _rows(x),
            }))
        _tar_add(tar, "cifar-100-python/meta", py2_pickle({
            b"fine_label_names": [n.encode() for n in cifar100_fine_names()],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_tinyimagenet_zip(path: Path, per_class: int = 1, n_val: int = 20, seed: int = 0) -> str:
    """``tiny-imagenet-200.zip`` in the cs231n layout: 200 wnids, train/<wnid>/images/*.JPEG,
    val/images + val_annotations.txt (the labelled set soften tests on), test/images.
    Random 64x64 JPEGs. Returns the md5."""
    import zipfile

    from PIL import Image

    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(200)]

    def jpeg() -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(root + "wnids.txt", "\n".join(wnids) + "\n")
        zf.writestr(root + "words.txt", "".join(f"{w}\tclass {i}\n" for i, w in enumerate(wnids)))
        for wnid in wnids:
            for i in range(per_class):
                zf.writestr(f"{root}train/{wnid}/images/{wnid}_{i}.JPEG", jpeg())
            zf.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", "")
        lines = []
        for i in range(n_val):
            zf.writestr(f"{root}val/images/val_{i}.JPEG", jpeg())
            lines.append(f"val_{i}.JPEG\t{wnids[i % 200]}\t0\t0\t63\t63\n")
        zf.writestr(root + "val/val_annotations.txt", "".join(lines))
        zf.writestr(root + "test/images/test_0.JPEG", jpeg())
    return hashlib.md5(path.read_bytes()).hexdigest()
