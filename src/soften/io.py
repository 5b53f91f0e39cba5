"""Atomic, deterministic file writes, and checksums.

Every artifact the pipeline produces is written to a temporary file in the
destination directory and renamed into place, so a killed job never leaves a
half-written file that Snakemake or DVC would trust. The same content gives the
same bytes (sorted JSON keys; zip members of npz and .pt files carry no time or
temporary name), so a rerun that computes the same numbers reproduces the file's
hash, which is what ``dvc status`` compares.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would (shared clusters, DVC remotes).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically. Through a file object: given a path,
    torch names the archive's root folder after the (random) temporary file."""
    import torch  # here, not at the top: soften.layout imports this module and must stay light

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


def sidecar_path(path: str | os.PathLike) -> str:
    """The JSON that describes an npz, written beside it: ``x.npz`` -> ``x.json``."""
    return str(Path(path).with_suffix(".json"))


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as indented JSON with sorted keys (and a final newline), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_text(text: str, path: str | os.PathLike) -> None:
    """``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Compressed npz of ``arrays``, atomically (zip members dated 1980-01-01 by zipfile: deterministic)."""
    # np.savez appends ".npz" to names without it, so write through a file object.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes (sha256 unless ``algorithm`` names another hashlib algorithm)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
