"""The cause of an error text: what TensorFlow or a serving engine actually objected to.

TensorFlow wraps its cause in a traceback ("Graph execution error: Detected at node ... defined at
(most recent call last): File ...", or "in user code: File ...") and appends node and op noise
("[[{{node Conv2D}}]] [Op:__inference_f_12]"); OpenVINO prefixes the C++ source lines that raised
("Exception from src/...:", "Check '...' failed at ...:"); a Python traceback ends in its cause.
A one-line reason cut from the head of such a text says nothing, so `cause` finds the line that
says what went wrong, and `shorten` keeps both ends of a line too long to show whole.

A leaf: it imports nothing from the package, nor TensorFlow.
"""

from __future__ import annotations

import re

# A traceback frame, in Python's and in TensorFlow's ("in user code:") layout.
_FRAME = re.compile(r'^File "[^"]*", line \d+')
# Lines that introduce a cause or say where it was raised, never the cause itself (TensorFlow up
# to 2.13 names the node on a line of its own before the cause: "Node: 'Reshape'").
_HEADER = re.compile(
    r"^(Traceback \(most recent call last\)|Graph execution error|Detected at node "
    r"|in user code:|During handling of the above exception|The above exception was the direct "
    r"cause|Stack trace|Exception from src/|Check '.*' failed at |Exception encountered when "
    r"calling|Arguments received by|Registered (devices|kernels)|Cf\. https?://|\^+$|~+$"
    r"|Node: '[^']*'$)"
)
# Fragments inside a line that locate the error in TensorFlow's graph or runtime.
_FRAGMENTS = re.compile(
    r"\[\[\{\{node [^\]]*\]\]|\[\[[A-Za-z_][\w/.:-]*\]\]|\[Op:[^\]]*\]|\(defined @ [^)]*\)"
    r"|Cf\. https?://\S+|\x1b\[[0-9;]*m"
)
_DEVICE_PREFIX = "/job:localhost/replica:0/task:0/device:"


def _clean(line: str) -> str:
    line = _FRAGMENTS.sub("", line).replace(_DEVICE_PREFIX, "")
    return " ".join(line.split())


def cause(error, limit: int = 160) -> str:
    """The line of `error` (an exception or its text) that says what went wrong, on one line of
    at most `limit` characters.

    That is the first meaningful line after the last traceback frame: not a frame or the source
    line under it, not a header ("Graph execution error:", "Exception from src/...:"), not node
    or op locations, and not a line ending in ':' that only introduces the next one. TensorFlow's
    `message` is read where an exception has one (its str() may add a framework prefix).
    """
    if isinstance(error, BaseException):
        text = getattr(error, "message", None)
        text = text if isinstance(text, str) and text.strip() else str(error)
        fallback = type(error).__name__
    else:
        text, fallback = str(error), ""
    raw = text.splitlines()
    # Everything up to the last frame (and the indented source line under it) is traceback.
    start = 0
    for i, line in enumerate(raw):
        if _FRAME.match(line.strip()):
            start = i + 1
            indent = len(line) - len(line.lstrip())
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) > indent:
                start = i + 2
    lines = [_clean(ln) for ln in raw[start:] if not _HEADER.match(ln.strip())]
    lines = [ln for ln in lines if ln]
    if not lines:
        lines = [_clean(ln) for ln in raw if _clean(ln)]
    chosen = next((ln for ln in lines if not ln.endswith(":")), lines[-1] if lines else fallback)
    return shorten(chosen, limit)


def shorten(text: str, limit: int) -> str:
    """`text` on one line; if longer than `limit`, its head and its tail around ' ... ', cut at
    words (the end of a reason often names the offending value)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    room = limit - len(" ... ")
    head, tail = text[: room * 2 // 3], text[len(text) - (room - room * 2 // 3) :]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    if " " in tail:
        tail = tail.split(" ", 1)[1]
    return f"{head.rstrip()} ... {tail.lstrip()}"
