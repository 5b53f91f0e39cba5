"""Downloads and local archives, checksum-verified, leaving nothing half-written.

A file is streamed to a temporary name in the destination directory while its
md5 is computed, and renamed onto its final name only when the checksum
matches. On a mismatch (a corrupt or truncated transfer, or a wrong mirror) the
temporary file is deleted and :class:`ChecksumError` names the file and both
checksums; a directory this module created is removed again if it is left
empty. So a failed fetch leaves nothing under ``resources/`` that Snakemake
could mistake for a finished download.

Every dataset accepts the same options (config ``datasets.<name>.options``):

- ``url`` / ``md5``: override the download location and expected checksum
  (mirrors, air-gapped clusters). ``md5: null`` skips verification.
- ``path``: an already-downloaded archive (verified against ``md5``) or an
  already-extracted folder; nothing is downloaded then.
- ``download_dir``: where downloads are cached (the fetch stage sets it to
  ``<resources_dir>/downloads`` unless given).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from soften.errors import SoftenError

log = logging.getLogger("soften.download")

USER_AGENT = "soften (+https://github.com/; dataset fetch)"


class ChecksumError(SoftenError, RuntimeError):
    """A file's md5 differs from the expected one."""

    def __init__(self, name: str, expected: str, actual: str, detail: str = ""):
        self.name, self.expected, self.actual = name, expected, actual
        msg = f"checksum mismatch for {name}: expected md5 {expected}, got md5 {actual}"
        super().__init__(msg + (f" ({detail})" if detail else ""))


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: str | os.PathLike, md5: str | None) -> None:
    """Raise :class:`ChecksumError` if ``path`` does not have checksum ``md5`` (None: skip)."""
    if md5 is None:
        return
    actual = md5_file(path)
    if actual != md5.lower():
        raise ChecksumError(str(path), md5.lower(), actual)


def _created_dirs(path: Path) -> list[Path]:
    """Directories on the way to ``path`` (inclusive) that do not exist yet, deepest first."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    return missing


def _remove_if_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first
        try:
            d.rmdir()
        except OSError:
            break


def download(url: str, dest_dir: str | os.PathLike, filename: str, md5: str | None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest_dir/filename`` unless a verified copy is already there.

    Returns the final path. Raises :class:`ChecksumError` (naming the file, the
    expected and the actual md5) or the network error, after deleting the
    partial file.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / filename
    if target.exists():
        if md5 is None or md5_file(target) == md5.lower():
            log.info("using cached %s", target)
            return target
        log.warning("cached %s does not match md5 %s; downloading it again", target, md5)
        target.unlink()
    new_dirs = _created_dirs(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        log.info("downloading %s", url)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        actual = h.hexdigest()
        if md5 is not None and actual != md5.lower():
            raise ChecksumError(filename, md5.lower(), actual, f"downloaded from {url}")
        os.replace(tmp, target)
        return target
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(new_dirs)
        raise


def obtain(options: dict[str, Any], *, filename: str, url: str, md5: str | None) -> Path:
    """Resolve one source file of a dataset: ``path`` if given, else a (cached) download.

    ``options['url']``/``options['md5']`` override the defaults. A ``path`` that
    is a folder is returned as is (an extracted archive); a file is verified.
    """
    url = options.get("url", url)
    md5 = options.get("md5", md5)
    if options.get("path"):
        path = Path(options["path"]).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"dataset path {path} does not exist")
        if path.is_file():
            verify_md5(path, md5)
        return path
    download_dir = options.get("download_dir")
    if not download_dir:
        raise ValueError(f"no 'path' given and no 'download_dir' to download {filename} into")
    return download(url, download_dir, filename, md5)
