"""Writing a file so that a crash mid-write leaves the old file or the new one, never half of one:
a temporary file beside it, flushed to disk, then renamed over it; and a file's identity by its
contents (`digest`). (A leaf: imports nothing else of the package.)"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import BinaryIO, Callable


def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it (os.umask sets it)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


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
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 less umask),
        # or an existing file's own mode.
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_replaceable(path, what: str, expected: str, ours: Callable[[str], bool]) -> None:
    """Refuse to write `what` at `path` when something the project did not write is there: a
    directory, a special file, or a file that `ours(path)` does not recognise. An absent path,
    or a file of the project's own, may be written.

    Raises:
        IsADirectoryError / FileExistsError: one line naming `path` and `expected`; nothing at
        `path` is changed.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"Cannot write {what} to {path!r}: it is a directory; expected {expected} or a new "
            "path. Nothing was changed."
        )
    if os.path.islink(path) or not os.path.isfile(path) or not ours(path):
        raise FileExistsError(
            f"Cannot write {what} to {path!r}: it exists and is not {expected}; remove it or "
            "choose another path. Nothing was changed."
        )


def json_with_keys(*keys: str) -> Callable[[str], bool]:
    """For `check_replaceable`: whether a file is a JSON object holding all of `keys` (what the
    project's recording scripts write)."""

    def ours(path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(data, dict) and all(k in data for k in keys)

    return ours


def digest(path) -> str:
    """The SHA-256 of a file's contents: what a cache keys a file by (not its name or mtime)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise ValueError(
            f"Invalid file. Expected a readable file; Received: {path!r} ({e.strerror})"
        ) from None
    return h.hexdigest()
