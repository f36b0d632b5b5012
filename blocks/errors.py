"""The one error of the project that carries two texts: a short message, one line for the user,
and `detail`, all that TensorFlow (or an engine, or a worker) said.

Its subclasses are kept where a caller catches one apart from the others: `blocks.DeviceError` (a
missing kernel, turned into a configuration's refusal), `blocks.EngineError` (a serving engine),
`steps.Unsupported` (a configuration this process cannot run), `workers.RequestFailed` (a worker
answered with a failure) and `lab.Unrunnable` (what the benchmarks skip).
"""

from __future__ import annotations


class DetailedError(RuntimeError):
    """A one-line message (`str(e)`) and the whole text behind it (`detail`, maybe empty)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail
