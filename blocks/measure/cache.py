"""The per-user cache of picks: one JSON file, written atomically, shared safely between processes.

Location: `$RESNET_BLOCKS_CACHE` if set, else the platform's cache directory
(`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on
Windows) + `resnet-blocks/picks.json`. A file that cannot be read is reported in one line, moved
aside and started afresh; a cache that cannot be written is reported and skipped. Neither ever
stops a pick or a model build.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time

from blocks.fileio import atomic_write

ENV_VAR = "RESNET_BLOCKS_CACHE"
FORMAT = 1
log = logging.getLogger("blocks")


def path() -> str:
    override = os.environ.get(ENV_VAR)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "resnet-blocks", "Cache", "picks.json")
    if sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "resnet-blocks", "picks.json")


def key_string(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _empty() -> dict:
    return {"format": FORMAT, "entries": {}}


def _set_aside(file: str, why: str) -> None:
    aside = f"{file}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        os.replace(file, aside)
        where = f"moved to {aside}"
    except OSError as e:
        where = f"could not be moved aside ({e.strerror})"
    log.warning(
        "resnet-blocks: pick cache %s is unreadable (%s); %s, starting a new one", file, why, where
    )


def _read(file: str, *, set_aside: bool):
    """The cache's contents; for a corrupt file, None, or (set_aside) empty after moving it."""
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
        if not (
            isinstance(data, dict)
            and data.get("format") == FORMAT
            and isinstance(data.get("entries"), dict)
        ):
            raise ValueError(f"not a format-{FORMAT} pick cache")
    except FileNotFoundError:
        return _empty()
    except PermissionError as e:
        log.warning(
            "resnet-blocks: pick cache %s cannot be read (%s); ignoring it", file, e.strerror
        )
        return _empty()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        if not set_aside:
            return None
        _set_aside(
            file, str(e) if isinstance(e, ValueError) and "format" in str(e) else type(e).__name__
        )
        return _empty()
    return data


def load(key: dict):
    """The cached entry (a dict) for `key`, or None. Never raises for a bad cache."""
    file = path()
    data = _read(file, set_aside=False)
    if data is None:  # corrupt: set it aside under the lock, unless a writer just replaced it
        try:
            with _locked(file):
                data = _read(file, set_aside=True)
        except OSError:
            data = _empty()
    return data["entries"].get(key_string(key))


@contextlib.contextmanager
def _locked(file: str):
    """An exclusive inter-process lock on `file`.lock for a read-merge-write."""
    lock_path = file + ".lock"
    handle = open(lock_path, "a+b")
    try:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def store(key: dict, entry: dict) -> bool:
    """Merge one entry into the cache file; False (and one log line) if it cannot be written."""
    file = path()
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with _locked(file):
            data = _read(file, set_aside=True)
            data["entries"][key_string(key)] = entry
            text = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
            atomic_write(file, lambda f: f.write(text), "the pick cache")
    except OSError as e:
        log.warning(
            "resnet-blocks: pick cache %s cannot be written (%s); the result is not cached",
            file,
            e.strerror or e,
        )
        return False
    return True


def entries() -> list:
    """Every (key, entry) in the cache, keys as dicts; empty for a missing or unreadable cache."""
    data = _read(path(), set_aside=False) or _empty()
    out = []
    for text, entry in data["entries"].items():
        try:
            key = json.loads(text)
        except ValueError:
            continue
        if isinstance(key, dict) and isinstance(entry, dict):
            out.append((key, entry))
    return out
