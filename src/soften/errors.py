"""Errors a user can act on: ``python -m soften`` prints each as one line (``soften
STAGE: error: ...``) and exits with status 2, without a traceback.

Every message names the file (or key), says what is wrong and what to do; every
one is listed in docs/troubleshooting.md. Anything else that escapes a stage is a
bug in soften and keeps its traceback. 
It lives below everything (imports nothing of soften) so that the command line can
catch these without importing the config machinery: a stage job run with ``--spec``
never imports ``soften.pipeline.config`` (see soften.pipeline.codedeps).
"""

from __future__ import annotations

import os


class SoftenError(Exception):
    """A problem with an input, a file or a run that the user can fix."""


class CorruptFileError(SoftenError):
    """A file soften reads is unreadable, not what soften writes, or fails a content check."""

    def __init__(self, path: str | os.PathLike, problem: str, remedy: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path} {problem}; {remedy}")


class WriteError(SoftenError):
    """An output could not be written (disk full, read-only, no permission); the
    previous version of the file, if any, is untouched."""


class DivergedError(SoftenError):
    """Training produced a non-finite loss or non-finite weights."""


class BusyError(SoftenError):
    """Another soften process holds what this one needs (a run folder)."""


class ConfigError(SoftenError, ValueError):
    """A configuration problem, reported with the offending key or file."""
