"""Writing a file so that a crash mid-write leaves the old file or the new one, never half of one:
a temporary file beside it, flushed to disk, then renamed over it. (A leaf: imports nothing else
of the package.)"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Callable


def atomic_write(path, write: Callable[[BinaryIO], None], what: str = "a file") -> None:
    """Call `write(f)` on a temporary binary file beside `path`, then rename it to `path`.

    Raises:
        FileNotFoundError / PermissionError: naming `path` (not the temporary file) and why.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot write {what} to {path!r}: the directory {directory!r} does not exist."
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    except PermissionError:
        raise PermissionError(
            f"Cannot write {what} to {path!r}: no permission to create files in {directory!r}."
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
