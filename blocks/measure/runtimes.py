"""Runtimes: process-level settings TensorFlow reads once, at import.

A runtime can only be changed by starting another process, so each is measured in a worker
process of its own (see `workers`). `default` is TensorFlow's own choice for this CPU (oneDNN on
with AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX, off elsewhere); where it equals `onednn` or
`no-onednn`, a pick measures it once and says so. Other settings (intra/inter-op threads, XLA's
CPU runtime) were measured to make no reliable difference (docs/measuring.md), so they
are not runtimes here; a new one is an entry in RUNTIMES.

This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from blocks import checks, cpu


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A named set of environment variables for a TensorFlow process (None: removed)."""

    name: str
    env: dict
    summary: str

    def environ(self, base: dict) -> dict:
        """`base` (a copy of os.environ) with this runtime's variables set or removed."""
        out = dict(base)
        for key, value in self.env.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out

    def exports(self) -> list:
        """Shell lines to set before TensorFlow is imported, e.g. ['TF_ENABLE_ONEDNN_OPTS=1']."""
        return [f"{k}={v}" for k, v in self.env.items() if v is not None]


RUNTIMES = {
    "default": Runtime("default", {cpu.ONEDNN_VAR: None}, "TensorFlow's own choice for this CPU"),
    "onednn": Runtime(
        "onednn", {cpu.ONEDNN_VAR: "1"}, "oneDNN kernels on (TF_ENABLE_ONEDNN_OPTS=1)"
    ),
    "no-onednn": Runtime(
        "no-onednn", {cpu.ONEDNN_VAR: "0"}, "TensorFlow's own kernels (TF_ENABLE_ONEDNN_OPTS=0)"
    ),
}


def get(name: str) -> Runtime:
    return RUNTIMES[checks.choice(name, list(RUNTIMES), "runtime", what="Unknown runtime")]


def default_equals() -> Optional[str]:
    """The explicit runtime TensorFlow's default is on this CPU ("onednn" or "no-onednn"), read
    from its flags; a worker confirms it from TensorFlow itself (`onednn_enabled`)."""
    if not cpu.is_x86_64():
        return None
    return "onednn" if cpu.onednn_on_by_default() else "no-onednn"


def distinct(names: Sequence[str]) -> tuple:
    """(runtimes to measure, {dropped: the one it equals}): `default` is dropped where it equals
    an explicit runtime also asked for, which is measured once."""
    names = list(dict.fromkeys(get(n).name for n in names))
    same = default_equals()
    if "default" in names and same in names:
        return tuple(n for n in names if n != same), {same: "default"}
    return tuple(names), {}
