"""Atomic, deterministic file writes, safe checkpoint loading, and checksums.

Every artifact the pipeline produces is written to a temporary file in the
destination directory, flushed to disk, and renamed into place, so a killed job
(or a power cut) never leaves a half-written file that Snakemake or DVC would
trust. A write that fails (disk full, read-only folder) raises
:class:`~soften.errors.WriteError` naming the file and leaves any earlier version
of it untouched. The same content gives the same bytes (sorted JSON keys; zip
members of npz and .pt files carry no time or temporary name), so a rerun that
computes the same numbers reproduces the file's hash, which is what ``dvc status``
compares. torch is imported where a checkpoint is read or written, not at the top:
soften.pipeline.layout imports this module and must stay light.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from soften.errors import CorruptFileError, WriteError

FOREIGN_PICKLE = "Python pickle of objects other than tensors and plain containers, which soften never writes and will not load"
#: Temporaries are named ``.<final name>.<random>.tmp`` (see :func:`atomic_path`).
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def _write_error(path: Path, err: OSError) -> WriteError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        try:
            free = f" ({shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free)"
        except OSError:
            free = ""
        what = f"no space left on device{free}; free some space in {path.parent} and re-run"
    else:
        what = f"{err.strerror or err}; check that {path.parent} exists and is writable, then re-run"
    return WriteError(f"could not write {path}: {what} (any earlier {path.name} is unchanged)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The body writes the temporary (and closes it); the file is then fsynced and
    renamed. An ``OSError`` in the body or the rename becomes a ``WriteError``
    naming ``path``; the temporary is removed either way.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        # mkstemp creates 0600; give the file the mode a plain open() would (shared clusters, DVC remotes).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except OSError as err:
        raise _write_error(path, err) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # Data on disk before the rename makes it visible: a power cut leaves the old file, not a truncated new one.
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    except OSError as err:
        raise _write_error(path, err) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries a killed writer left in ``folder`` (only call this while
    no other process writes there, e.g. holding the folder's lock). Returns them."""
    stale = [p for p in Path(folder).iterdir() if p.is_file() and TEMPORARY.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class _WriteRecorder:
    """The file ``torch.save`` writes through, remembering the OSError a write raised:
    PyTorch's writer reports it as an opaque "[enforce fail at inline_container.cc]"."""

    def __init__(self, fh):
        self._fh, self.error = fh, None

    def write(self, data) -> int:
        """Write through; remember the first OSError."""
        try:
            return self._fh.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        """Flush the wrapped file."""
        self._fh.flush()


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically. Through a file object: given a path,
    torch names the archive's root folder after the (random) temporary file."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        out = _WriteRecorder(fh)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is None:
                raise
            raise out.error from None  # e.g. ENOSPC: atomic_path names the file


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a file soften wrote with ``torch.save``, with ``weights_only=True`` (no
    arbitrary unpickling). An unreadable file raises ``CorruptFileError`` naming it."""
    import torch

    path = Path(path)
    with open(path, "rb") as fh:  # a missing file raises FileNotFoundError, which names it
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes zip archives; anything else is refused before unpickling
        if magic[:1] == b"\x80":
            raise CorruptFileError(path, "is not a soften checkpoint: it is a plain Python pickle, which soften never "
                                         "writes and will not load",
                                   "check where it came from, and delete it or re-create it with soften")
        raise CorruptFileError(path, "is truncated or corrupt (" + ("empty" if not magic else "no zip header") + ")",
                               "delete it and re-run the job that writes it")
    try:
        with warnings.catch_warnings():
            # A foreign pickle makes the safe unpickler warn before it refuses; the refusal is reported below.
            warnings.filterwarnings("ignore", module=r"torch\._weights_only_unpickler")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except pickle.UnpicklingError:
        # Never pass on PyTorch's advice to retry with weights_only=False: that runs code from the file.
        raise CorruptFileError(path, f"is not a soften checkpoint: it holds a {FOREIGN_PICKLE}",
                               "check where it came from, and delete it or re-create it with soften") from None
    except Exception as err:  # noqa: BLE001 - whatever the reader trips over, the file is unreadable
        raise CorruptFileError(path, f"is truncated or corrupt ({_reason(err)})",
                               "delete it and re-run the job that writes it") from None


def _reason(err: BaseException) -> str:
    """The first sentence of a reader's error, as a hint (never its advice)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". ")[0][:120]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


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
