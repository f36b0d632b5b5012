"""The per-user cache of picks: one JSON file, written atomically, shared safely between processes.

Location: `$RESNET_BLOCKS_CACHE` if set, else the platform's cache directory
(`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on
Windows) + `resnet-blocks/picks.json`.

The cache touches only a file it can tell is its own. Its files begin with the marker
`{"resnet-blocks": "pick cache"` (the first key, written first, so even a file cut short still
begins with it); a file that parses as a dict with "format" and "entries" (what earlier
versions wrote) is its own too. Anything else at the path (a directory, a special file, an empty
file, a file without the marker) is refused in one warning naming the path, and left exactly as
it is, with no `.lock` put beside it: `load` finds nothing there and `store` writes nothing. Only
a file of its own that is corrupt (garbled or truncated JSON, an unknown format number, entries
that are not a mapping) is moved aside to `<path>.corrupt-<time>-<pid>`, and a new one started.
A bad or unwritable cache never stops a pick or a model build.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import sys
import time

from blocks.fileio import atomic_write

ENV_VAR = "RESNET_BLOCKS_CACHE"
FORMAT = 1
MARKER_KEY, MARKER = "resnet-blocks", "pick cache"
_MARKED = re.compile(rb'\s*\{\s*"resnet-blocks"\s*:\s*"pick cache"')
# An unmarked file bigger than this cannot be an earlier version's cache worth reading whole.
_UNMARKED_MAX_BYTES = 64 << 20
_UNMARKED = "a file without the pick cache marker"
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
    return {MARKER_KEY: MARKER, "format": FORMAT, "entries": {}}


def _dumps(data: dict) -> bytes:
    """The marker first (see the module docstring), then everything else in sorted order."""
    entries = json.loads(json.dumps(data["entries"], sort_keys=True))
    ordered = {MARKER_KEY: MARKER, "format": FORMAT, "entries": entries}
    return (json.dumps(ordered, indent=1) + "\n").encode("utf-8")


def _inspect(file: str) -> tuple:
    """What is at `file`: ("absent", None), ("ours", data), ("corrupt", why) for a file of
    ours that cannot be used, ("foreign", what it is) or ("unreadable", why)."""
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return "absent", None
    except OSError as e:
        return "unreadable", e.strerror or type(e).__name__
    if stat.S_ISDIR(st.st_mode):
        return "foreign", "a directory"
    if not stat.S_ISREG(st.st_mode):
        return "foreign", "not a regular file"
    if st.st_size == 0:
        return "foreign", "an empty file"
    try:
        with open(file, "rb") as f:
            head = f.read(64)
            marked = bool(_MARKED.match(head))
            if not marked and (
                not head.lstrip().startswith(b"{") or st.st_size > _UNMARKED_MAX_BYTES
            ):
                return "foreign", _UNMARKED
            raw = head + f.read()
    except OSError as e:
        return "unreadable", e.strerror or type(e).__name__
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        if marked:
            return "corrupt", "not JSON: truncated or damaged"
        return "foreign", _UNMARKED
    if not (marked or data.get(MARKER_KEY) == MARKER or {"format", "entries"} <= data.keys()):
        return "foreign", _UNMARKED
    if data.get("format") != FORMAT:
        return "corrupt", f"format {data.get('format')!r}, not a format-{FORMAT} pick cache"
    if not isinstance(data.get("entries"), dict):
        return "corrupt", f"its entries are not a mapping, not a format-{FORMAT} pick cache"
    return "ours", data


def _refuse(file: str, state: str, what: str, outcome: str) -> None:
    if state == "unreadable":
        log.warning("resnet-blocks: pick cache %s cannot be read (%s); %s", file, what, outcome)
        return
    log.warning(
        "resnet-blocks: pick cache %s is %s; expected a resnet-blocks pick cache file. Left as "
        "it is: %s (set %s to a path of its own)",
        file,
        what,
        outcome,
        ENV_VAR,
    )


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


def _file() -> str:
    """The cache's path with symbolic links resolved: a link the user made to the cache file
    stays a link, the file behind it is what gets replaced."""
    return os.path.realpath(path())


def load(key: dict):
    """The cached entry (a dict) for `key`, or None. Never raises for a bad cache."""
    file = _file()
    state, data = _inspect(file)
    if state == "corrupt":  # set it aside under the lock, unless a writer just replaced it
        try:
            with _locked(file):
                state, data = _inspect(file)
                if state == "corrupt":
                    _set_aside(file, data)
                    state = "absent"
        except OSError:
            state = "absent"
    if state in ("foreign", "unreadable"):
        _refuse(file, state, data, "no cached pick is read from it")
    return data["entries"].get(key_string(key)) if state == "ours" else None


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
    file = _file()
    outcome = "the result is not cached"
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        # Checked before taking the lock, so that no .lock lands beside a file not ours; and
        # again under it, for whatever another process put there in between.
        state, data = _inspect(file)
        if state in ("foreign", "unreadable"):
            _refuse(file, state, data, outcome)
            return False
        with _locked(file):
            state, data = _inspect(file)
            if state in ("foreign", "unreadable"):
                _refuse(file, state, data, outcome)
                return False
            if state == "corrupt":
                _set_aside(file, data)
            if state != "ours":
                data = _empty()
            data["entries"][key_string(key)] = entry
            text = _dumps(data)
            atomic_write(file, lambda f: f.write(text), "the pick cache")
    except OSError as e:
        log.warning(
            "resnet-blocks: pick cache %s cannot be written (%s); %s",
            file,
            e.strerror or e,
            outcome,
        )
        return False
    return True


def entries() -> list:
    """Every (key, entry) in the cache, keys as dicts; empty for a cache that is absent, not
    ours or unreadable (`load` says which)."""
    state, data = _inspect(_file())
    if state != "ours":
        return []
    out = []
    for text, entry in data["entries"].items():
        try:
            key = json.loads(text)
        except ValueError:
            continue
        if isinstance(key, dict) and isinstance(entry, dict):
            out.append((key, entry))
    return out
