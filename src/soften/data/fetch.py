"""The fetch stage: materialise a dataset as one npz with a JSON sidecar.

npz keys: ``x_train, y_train, x_val, y_val, x_test, y_test`` (uint8 NHWC images,
int64 labels), ``class_names``, and ``mean``/``std`` (per-channel statistics of
the training split in [0, 1], used by the normalisation layer inside models).
The validation split is carved from the original training set, stratified, with
a recorded seed; checkpoint selection uses it and never the test split.

Loading checks what fetch recorded (:func:`load_dataset_npz`): the file's sha256
against the sidecar (once per process), image dtype and shape, label range and
class count; a file that fails raises ``CorruptFileError`` naming it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from soften.data.sources import BUILDERS, RawDataset
from soften.errors import CorruptFileError
from soften.io import file_digest, save_json, save_npz, sidecar_path

log = logging.getLogger("soften.data")

DATASET_BUILDERS = BUILDERS
NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "class_names", "mean", "std")


def carve_validation(y: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of indices ``0..len(y)-1`` into (train_idx, val_idx)."""
    if not 0 <= val_size < len(y):
        raise ValueError(f"val_size must be in [0, {len(y)}), got {val_size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    # Largest-remainder allocation keeps class proportions and the exact total.
    quota = counts * val_size / len(y)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: val_size - take.sum()]:
        take[i] += 1
    val = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def build_arrays(raw: RawDataset, val_size: int, val_seed: int) -> dict[str, np.ndarray]:
    """The npz arrays (:data:`NPZ_KEYS`) of a raw dataset, with ``val_size`` training images
    carved out as the validation split (stratified, seeded) and mean/std of the remaining
    training pixels in [0, 1] per channel."""
    for name in ("x_train", "x_test"):
        arr = getattr(raw, name)
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise ValueError(f"{name} must be uint8 NHWC, got {arr.dtype} {arr.shape}")
    train_idx, val_idx = carve_validation(raw.y_train, val_size, val_seed)
    x_train = raw.x_train[train_idx]
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    return {
        "x_train": x_train,
        "y_train": raw.y_train[train_idx].astype(np.int64),
        "x_val": raw.x_train[val_idx],
        "y_val": raw.y_train[val_idx].astype(np.int64),
        "x_test": raw.x_test,
        "y_test": raw.y_test.astype(np.int64),
        "class_names": np.asarray(raw.class_names),
        "mean": pixels.mean(0).astype(np.float32),
        "std": pixels.std(0).astype(np.float32),
    }


def fetch_dataset(name: str, options: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Build dataset ``name`` (a key of :data:`BUILDERS`) into ``out`` (npz) and its sidecar JSON.

    ``options``: the builder's own options plus ``val_size``/``val_seed`` (a stratified
    validation split carved out of train) and ``subset`` (``{split: n}``, the first n
    images of a split). Returns the sidecar's content: source, sha256 of the npz,
    class names, image shape (H, W, C), split sizes, per-channel mean/std of the
    training pixels in [0, 1].
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(BUILDERS)}")
    out = Path(out)
    start = time.time()
    raw = BUILDERS[name](options)
    val_size = int(options.get("val_size", 0))
    val_seed = int(options.get("val_seed", 0))
    arrays = build_arrays(raw, val_size, val_seed)
    subset = options.get("subset") or {}
    for split, n in subset.items():
        # The first n of the split; mean/std stay those of the whole training split.
        arrays[f"x_{split}"], arrays[f"y_{split}"] = arrays[f"x_{split}"][:n], arrays[f"y_{split}"][:n]
    save_npz(out, **arrays)
    meta = {
        "dataset": name,
        "source": raw.source,
        "sha256": dataset_digest(out),
        "num_classes": len(raw.class_names),
        "class_names": list(map(str, raw.class_names)),
        "image_shape": list(arrays["x_train"].shape[1:]),
        "splits": {s: int(len(arrays[f"y_{s}"])) for s in ("train", "val", "test")},
        "val_seed": val_seed,
        "subset": dict(subset),
        "mean": arrays["mean"].tolist(),
        "std": arrays["std"].tolist(),
    }
    save_json(meta, sidecar_path(out))
    # Wall-clock time goes to the job's log, not into the artifact (soften.io: same inputs, same bytes).
    log.info("fetched %s into %s in %.3f s", name, out, time.time() - start)
    return meta


def read_npz(path: str | Path, what: str = "npz file",
             remedy: str = "delete it and re-run the job that writes it") -> dict[str, np.ndarray]:
    """Every array of an npz file, read without unpickling; an unreadable file
    (truncated, random bytes, an object array) raises ``CorruptFileError`` naming it."""
    path = Path(path)
    with open(path, "rb") as fh:  # a missing file raises FileNotFoundError, which names it
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # np.load would try to unpickle it
        problem = "is empty" if not magic else "is not a zip archive"
        raise CorruptFileError(path, f"is not a readable {what}: it {problem}", remedy)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, an object array, ...
        problem = "holds Python objects, which soften never writes" if "pickle" in str(err) else \
            f"is truncated or corrupt ({type(err).__name__})"
        raise CorruptFileError(path, f"is not a readable {what}: it {problem}", remedy) from None


#: sha256 of each dataset file this process has read, by (path, size, mtime): a job
#: hashes each dataset once however often it loads it.
_digests: dict[tuple[str, int, int], str] = {}


def dataset_digest(path: str | Path) -> str:
    """The file's sha256, computed once per process (per version of the file)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_digest(path)
    return _digests[key]


def _check_sidecar(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The npz is the one fetch wrote: its sha256 and class count match the JSON sidecar."""
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        log.warning("%s has no %s sidecar: its checksum cannot be verified", path, sidecar.name)
        return
    try:
        meta = json.loads(sidecar.read_text())
        recorded = meta["sha256"]
    except (ValueError, KeyError, TypeError):
        raise CorruptFileError(sidecar, "is not a soften dataset sidecar (unreadable JSON or no sha256)",
                               f"delete it and {path.name}, and re-run fetch") from None
    actual = dataset_digest(path)
    if actual != recorded:
        raise CorruptFileError(path, f"has sha256 {actual[:16]}… but its sidecar {sidecar.name} records "
                                     f"{str(recorded)[:16]}…: the file changed after fetch (an incomplete copy, an "
                                     "edit, or another version)", f"delete {path.name} and {sidecar.name} and re-run fetch")
    if "num_classes" in meta and meta["num_classes"] != len(arrays["class_names"]):
        raise CorruptFileError(path, f"has {len(arrays['class_names'])} class names but {sidecar.name} records "
                                     f"{meta['num_classes']} classes", f"delete {path.name} and {sidecar.name} and re-run fetch")


def check_labels(y: np.ndarray, num_classes: int, path: str | Path, key: str, n: int | None = None,
                 remedy: str = "re-run fetch") -> None:
    """Labels are a vector of integers in [0, num_classes) (and ``n`` long if given)."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise CorruptFileError(path, f"holds {key} of dtype {y.dtype} and shape {y.shape}, not a vector of "
                                     "integer labels", remedy)
    if n is not None and len(y) != n:
        raise CorruptFileError(path, f"holds {len(y)} {key} for {n} images", remedy)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise CorruptFileError(path, f"holds {key} label {bad}, outside the {num_classes} classes [0, {num_classes})",
                               remedy)


def check_dataset(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """The content checks: uint8 NHWC images of one shape in every split, labels in
    [0, K) for K class names, one label per image, finite per-channel statistics."""
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise CorruptFileError(path, f"is not a soften dataset npz: missing keys {missing}", "re-run fetch")
    k = len(arrays["class_names"])
    if arrays["class_names"].ndim != 1 or k < 2:
        raise CorruptFileError(path, f"lists {k} class names; a dataset needs at least 2", "re-run fetch")
    shape = arrays["x_train"].shape[1:]
    for split in ("train", "val", "test"):
        x = arrays[f"x_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != shape or shape[-1] not in (1, 3):
            raise CorruptFileError(path, f"holds x_{split} of dtype {x.dtype} and shape {x.shape}; soften datasets "
                                         f"hold uint8 images N x H x W x C (C 1 or 3) of one shape {shape}", "re-run fetch")
        check_labels(arrays[f"y_{split}"], k, path, f"y_{split}", len(x))
    for key in ("mean", "std"):
        v = arrays[key]
        if v.shape != (shape[-1],) or not np.isfinite(v).all() or (key == "std" and (v <= 0).any()):
            raise CorruptFileError(path, f"holds {key} {v.tolist()}, not {shape[-1]} finite per-channel values"
                                         + (" > 0" if key == "std" else ""), "re-run fetch")


def load_dataset_npz(path: str | Path) -> dict[str, np.ndarray]:
    """A fetched dataset's arrays, checked: the file matches its sidecar's sha256
    (hashed once per process) and its content passes :func:`check_dataset`."""
    path = Path(path)
    arrays = read_npz(path, "soften dataset npz", f"delete it and {path.with_suffix('.json').name}, and re-run fetch")
    check_dataset(arrays, path)
    _check_sidecar(path, arrays)
    return arrays


def load_noisy_labels(path: str | Path, num_classes: int, n: int) -> np.ndarray:
    """The noisy training labels of a noise file, checked against the dataset's class count and size."""
    arrays = read_npz(path, "soften noise npz", "delete it and re-run the noise stage")
    if "y_train_noisy" not in arrays:
        raise CorruptFileError(path, "is not a soften noise npz: no y_train_noisy", "re-run the noise stage")
    y = arrays["y_train_noisy"]
    check_labels(y, num_classes, path, "y_train_noisy", n, "re-run the noise stage for this dataset")
    return y
