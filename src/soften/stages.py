"""Stage functions that are thin glue between the CLI and the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from soften.data import load_dataset_npz
from soften.io import save_json, save_npz
from soften.noise import inject_label_noise, parse_noise_name


def make_noise(dataset_npz: str | Path, noise: str, seed: int, out: str | Path) -> dict[str, Any]:
    """Inject ``noise`` (e.g. 'symmetric-0.4') into the training labels only."""
    kind, rate = parse_noise_name(noise)
    arrays = load_dataset_npz(dataset_npz)
    clean = arrays["y_train"]
    noisy, flipped = inject_label_noise(clean, len(arrays["class_names"]), kind, rate, seed)
    save_npz(out, y_train_noisy=noisy, flipped=flipped)
    meta = {"noise": noise, "kind": kind, "rate": rate, "seed": seed, "n": int(clean.size),
            "n_flipped": int(flipped.sum()), "realised_rate": float(flipped.mean()) if clean.size else 0.0}
    save_json(meta, Path(out).with_suffix(".json"))
    return meta
