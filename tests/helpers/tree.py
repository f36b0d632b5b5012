"""A snapshot of a directory tree, to show that a refused call left every path as it was."""

import os
import stat


def snapshot(root) -> dict:
    """Every path under `root`: its mode, modification time and (regular files) bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime_ns, data)
    return out
