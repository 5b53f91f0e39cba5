"""The fetch stage: materialise a dataset as one npz with a JSON sidecar.

npz keys: ``x_train, y_train, x_val, y_val, x_test, y_test`` (uint8 NHWC images,
int64 labels), ``class_names``, and ``mean``/``std`` (per-channel statistics of
the training split in [0, 1], used by the normalisation layer inside models).
The validation split is carved from the original training set, stratified, with
a recorded seed; checkpoint selection uses it and never the test split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from soften.data.sources import BUILDERS, RawDataset
from soften.io import file_digest, save_json, save_npz, sidecar_path

log = logging.getLogger("soften.fetch")

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
        "sha256": file_digest(out),
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


def load_dataset_npz(path: str | Path) -> dict[str, np.ndarray]:
    """A fetched dataset's arrays (:data:`NPZ_KEYS`); ValueError if ``path`` is not one."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{path} is not a soften dataset npz: missing keys {missing}")
        return {k: f[k] for k in f.files}
