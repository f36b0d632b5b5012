"""Weight files: `.npz` (NumPy) and `.safetensors`. Written in the format the path's extension
names (any case; any other extension is refused), atomically (a temporary file, then a rename);
read by their first bytes whatever their name (weights other tools saved as `.bin` or `.pt` in
one of these formats load), without unpickling anything.

safetensors is read and written through its NumPy API: no PyTorch needed, and a file it writes
loads in PyTorch with `safetensors.torch.load_file`.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from blocks.fileio import atomic_write

FORMATS = ("npz", "safetensors")
SUFFIXES = {".npz": "npz", ".safetensors": "safetensors"}


def format_for(path) -> str:
    """The format a path's extension asks for when writing (any case).

    Raises:
        ValueError: any other extension, or none, naming the accepted ones.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Invalid weights path. Expected a file path; Received: path={path!r}")
    path = os.fspath(path)
    kind = SUFFIXES.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise ValueError(
            "Invalid weights path. Expected a file name ending in '.npz' or '.safetensors' "
            f"(any case); Received: path={path!r}"
        )
    return kind


def write(path, arrays: dict) -> None:
    """`arrays` to `path`, in the format its extension asks for, atomically. Everything is
    checked before anything is written.

    Raises:
        ValueError: an extension other than .npz or .safetensors; an array holding NaN or inf.
        IsADirectoryError / FileNotFoundError / PermissionError: naming `path`.
    """
    kind = format_for(path)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"Cannot write weights to {path!r}: it is a directory; expected a file path ending "
            "in '.npz' or '.safetensors'."
        )
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        # load_weights refuses such a file: it is refused here, before it exists.
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise ValueError(
                f"Weight {key!r} holds NaN or infinite values; nothing was written to {path!r}."
            )
    if kind == "safetensors":
        data = save(arrays, metadata={"format": "np", "writer": "resnet-blocks"})
        atomic_write(path, lambda f: f.write(data), "weights")
    else:
        atomic_write(path, lambda f: np.savez(f, **arrays), "weights")


def _describe_head(head: bytes) -> str:
    """What a file that is not a weights file seems to be, from its first bytes."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not a weights file (it starts with bytes {head[:8].hex(' ')})"
    if text.isprintable() or "\n" in text:
        preview = " ".join(text.split())[:24]
        return f"a text file, not a weights file (it starts with {preview!r})"
    return f"not a weights file (it starts with {text[:8]!r})"


def sniff(head: bytes) -> str:
    """ "npz", "npy", "safetensors", or "" for anything else, from a file's first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return ""


def read(path) -> dict:
    """{name: array} from an .npz or .safetensors file.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a directory, an empty, truncated or foreign file, or pickled data.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No weights file at {path!r}.")
    if os.path.isdir(path):
        raise ValueError(f"Invalid weights file {path!r}: it is a directory.")
    with open(path, "rb") as f:
        head = f.read(64)
    what = "an .npz or .safetensors file of arrays (as written by blocks.save_weights)"
    if not head:
        raise ValueError(f"Invalid weights file {path!r}: it is empty; expected {what}.")
    kind = sniff(head)
    if kind == "safetensors":
        return _read_safetensors(path, what)
    if kind == "npy":
        raise ValueError(
            f"Invalid weights file {path!r}: it holds a single .npy array; expected {what}."
        )
    if kind != "npz":
        raise ValueError(f"Invalid weights file {path!r}: {_describe_head(head)}; expected {what}.")
    return _read_npz(path, what)


def _read_safetensors(path, what) -> dict:
    try:
        return dict(load_file(path))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(
            f"Invalid weights file {path!r}: a damaged or truncated .safetensors file; expected "
            f"{what}. Detail: {e}"
        ) from e


def _read_npz(path, what) -> dict:
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as e:
        raise ValueError(
            f"Invalid weights file {path!r}: expected {what}; it may be truncated. Detail: {e}"
        ) from e
    with archive:
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except unreadable as e:
                cause = (
                    "is a pickled object array, which is never loaded (unpickling runs code)"
                    if "allow_pickle" in str(e)
                    else "cannot be read (truncated or damaged?)"
                )
                raise ValueError(
                    f"Invalid weights file {path!r}: entry {key!r} {cause}; expected {what}. "
                    f"Detail: {e}"
                ) from e
        return arrays
